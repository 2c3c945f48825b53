"""`purify bench`: every defense on every model at the same clean-data budget, as one table."""
