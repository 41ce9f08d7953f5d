"""Drivers of the simulated machine, one module each, on the driver core."""
