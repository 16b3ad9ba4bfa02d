"""Driving datasets: recorded frames, labels and scene features on disk (see ``format``)."""
