"""Vectors back to text: store lookup first, an inverter (with correction) for what the store lacks."""
