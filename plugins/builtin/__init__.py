"""Plugins shipped with the host. Each module registers through the `purify` entry points, exactly
as a third-party package would."""
