"""The store read as training data: documents and their windows, typed relations and walks, and the
relation memory the model reads. Training, episodes, eval and the exporters all read it."""
