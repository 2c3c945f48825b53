"""`purify zoo`: one defense over a whole zoo of models, on this machine or a Ray cluster."""
