"""Pulumi components: declared once, instantiated against the docker or the kubernetes adapter."""
