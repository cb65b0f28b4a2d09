"""The catalogue's models, rules, settings and resolution."""
