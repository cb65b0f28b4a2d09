"""The catalogue's models, rules, settings and resolution."""

import os

# The catalogue's models are built at import. Pydantic would first scan every installed
# distribution's entry points for plugins (about 50 ms of every `manacore` command and every
# Pulumi run); this project uses none. `PYDANTIC_DISABLE_PLUGINS=` (empty) turns the scan on.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
