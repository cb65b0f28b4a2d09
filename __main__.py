"""ManaCore's estate: stack settings → the resolved catalogue → the components of the target."""

import pulumi

from catalog.load import LoadError, load_estate
from catalog.resolve import resolve
from catalog.rules import EstateError, stage_failure
from catalog.settings import PROJECT, SettingsError, settings_from_config
from components.program import deploy
from exports.reports import budget_violations

try:
    estate = resolve(load_estate(), settings_from_config(pulumi.get_stack(),
                                                         pulumi.Config(PROJECT).get))
    if over := budget_violations(estate):  # the tunnel's checks run in CloudflareTunnel
        raise EstateError(over)
except (EstateError, SettingsError, LoadError) as exc:
    raise pulumi.RunError(str(exc)) from None
try:
    deploy(estate)
except pulumi.RunError:
    raise
except Exception as exc:  # an estate the rules let through: a line, not a traceback
    raise pulumi.RunError(str(stage_failure("estate", "deploy", exc))) from None
