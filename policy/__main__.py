"""The policy pack: `pulumi preview --policy-pack policy` runs this file.

Constructing `PolicyPack` starts the analyzer's gRPC server and blocks, so nothing else may
import this file; the policies live in `manacore_policies` (tests import that).
"""

from manacore_policies import POLICIES, keep_secret_markers
from pulumi_policy import EnforcementLevel, PolicyPack

keep_secret_markers()
PolicyPack(name="manacore-conventions", policies=POLICIES,
           enforcement_level=EnforcementLevel.MANDATORY)
