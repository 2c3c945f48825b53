"""Checkpoint adapters: each module registers one format through the `purify` entry points."""
