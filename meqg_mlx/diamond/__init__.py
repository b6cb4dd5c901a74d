"""Math that training and episodes share: objective, views, the modal ledger, the gate."""
