"""Secret values: from Pulumi config secrets, or generated with `pulumi_random`; always secret
Outputs, never plain text."""

from __future__ import annotations

import pulumi
import pulumi_random as random

from catalog.model import ED25519_KEY_ID, Secret
from catalog.resolve import URL_SAFE, URL_SAFE_TEXT, ResolvedEstate
from catalog.settings import PROJECT


class MissingSecrets(pulumi.RunError):
    """Secrets missing or unusable on this stack; raised before anything is registered."""


def unsafe_in_urls(estate: ResolvedEstate) -> list[str]:
    """Secrets set by hand that a URL cannot carry verbatim (names only, never a value)."""
    unsafe = []
    for name in estate.url_secrets:
        raw = pulumi.runtime.get_config(f"{PROJECT}:{name}")  # plain text only to check it
        if raw is not None and not URL_SAFE.fullmatch(raw):
            unsafe.append(f"  {name}: goes into a URL (DATABASE_URL, REDIS_URL …) verbatim on "
                          f"every target, so it may hold {URL_SAFE_TEXT}; set a new value: "
                          f"pulumi config set --secret {name} \"$(openssl rand -hex 32)\"")
    return unsafe


def generated(secret: Secret, opts: pulumi.ResourceOptions) -> pulumi.Output[str]:
    """A new random value of the secret's kind (kept in the stack's state, so stable)."""
    name = secret.name.lower().replace("_", "-")
    if secret.kind == "ed25519":
        seed = random.RandomBytes(name, length=32, opts=opts).base64
        return pulumi.Output.concat(f"ed25519 {ED25519_KEY_ID} ", seed)
    if secret.kind == "hex32":  # 32 random bytes as 64 hex digits (Garage's RPC secret)
        return random.RandomId(name, byte_length=32, opts=opts).hex
    return random.RandomPassword(name, length=32, special=False, opts=opts).result


class SecretStore(pulumi.ComponentResource):
    """Every secret the stack's services need, by name."""

    def __init__(self, name: str, estate: ResolvedEstate,
                 provided: dict[str, pulumi.Output[str]] | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("manacore:stack:Secrets", name, None, opts)
        config = pulumi.Config(PROJECT)
        given = {s.name: (provided or {}).get(s.name) or config.get_secret(s.name)
                 for s in estate.secrets}
        missing = [s for s in estate.secrets if given[s.name] is None and not s.generate]
        unsafe = unsafe_in_urls(estate)
        if missing or unsafe:  # checked before anything is registered: nothing is half-applied
            raise MissingSecrets("secrets not set or not usable on this stack (nothing was "
                                 "created):\n" +
                                 "\n".join([*(f"  {s.name}: {s.description} → "
                                               f"pulumi config set --secret {s.name} <value>"
                                               for s in missing), *unsafe]))
        # the random provider only when something is generated: a stack whose secrets are all
        # set needs no random plugin (the real-engine suite runs that way)
        provider = (random.Provider("random", opts=pulumi.ResourceOptions(parent=self))
                    if any(v is None for v in given.values()) else None)
        self._values: dict[str, pulumi.Output[str]] = {}
        for secret in estate.secrets:
            value = given[secret.name]
            if value is None:
                value = generated(secret, pulumi.ResourceOptions(parent=self, provider=provider))
            self._values[secret.name] = pulumi.Output.secret(value)
        self.register_outputs({"names": sorted(self._values)})

    def value(self, name: str) -> pulumi.Output[str]:
        return self._values[name]

    @property
    def names(self) -> list[str]:
        return sorted(self._values)
