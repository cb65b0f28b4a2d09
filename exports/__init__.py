"""Serializers of the resolved estate: each a pure function of `ResolvedEstate`."""
