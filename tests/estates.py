"""Small estates for the rule and resolution tests: one valid base, changed one fact at a time."""

from __future__ import annotations

from catalog.model import (
    Estate,
    Legacy,
    Public,
    Secret,
    Service,
    Volume,
    cmd,
    db_url,
    hard,
    http,
    image,
    lazy,
    many,
    once,
    own,
    port,
    port_of,
    public_url,
    redis_url,
    service,
    url_of,
)
from catalog.settings import BackupSettings, StackSettings

MACMINI = StackSettings(stack="macmini", target="docker", domain="example.org",
                        registry="ghcr.io/acme", tag="1.2.3", memory_budget="4Gi",
                        backup=BackupSettings(path="/srv/manacore-backup"))
K3S = MACMINI.model_copy(update={"stack": "k3s", "target": "kubernetes",
                                 "native_host": "10.0.0.5", "memory_budget": "8Gi"})


STATELESS = "assumed of our test apps: no state in the process"


def base_services() -> list[Service]:
    return [
        service(id="postgres", category="infra", role="datastore",
                image=image("postgres:16.4"), ports=[port(5432, "postgres")],
                secrets=["POSTGRES_PASSWORD"], volumes=[Volume(path="/var/lib/postgresql/data")],
                health=cmd("pg_isready"), memory="512Mi",
                availability=once("user-facing", "one server per data directory"),
                legacy=Legacy(containers=["old-postgres"], ports=[5432], volumes=["pgdata"])),
        service(id="redis", category="infra", role="datastore", image=image("redis:7.4.1"),
                ports=[port(6379, "redis")], secrets=["REDIS_PASSWORD"],
                health=cmd("redis-cli", "ping"), memory="128Mi",
                availability=once("user-facing", "one server, no replication")),
        service(id="auth", category="core", role="core", image=own("auth"), ports=[port(3001)],
                env={"PORT": port_of("auth"), "DATABASE_URL": db_url(),
                     "REDIS_URL": redis_url()},
                database="auth", needs=[hard("postgres"), hard("redis")],
                health=http("/health"), memory="256Mi", public=Public(host="auth"),
                availability=many("user-facing", STATELESS),
                legacy=Legacy(containers=["old-auth"], ports=[3001])),
        service(id="gateway", category="core", role="gateway", image=own("gateway"),
                ports=[port(3010)], env={"AUTH_URL": url_of("auth")},
                needs=[hard("auth"), lazy("postgres")], health=http("/health"),
                memory="128Mi", public=Public(host="api"),
                availability=many("user-facing", STATELESS)),
        service(id="notes-backend", category="app", role="backend", image=own("notes-backend"),
                ports=[port(3030)],
                env={"DATABASE_URL": db_url(), "AUTH_URL": url_of("auth"),
                     "OLLAMA_URL": url_of("ollama")},
                database="notes", needs=[hard("postgres"), hard("auth"), lazy("ollama")],
                health=http("/health"), memory="128Mi", public=Public(host="notes-api"),
                availability=many("user-facing", STATELESS)),
        service(id="notes-web", category="app", role="frontend", image=own("notes-web"),
                ports=[port(5010, container=3000)],
                env={"PUBLIC_API": public_url("notes-backend"),
                     "API": url_of("notes-backend")},
                needs=[lazy("notes-backend")], health=http("/"), memory="64Mi",
                public=Public(host="notes"), availability=many("user-facing", STATELESS)),
        service(id="ollama", category="native", role="llm", ports=[port(11434)],
                health=http("/api/version")),
    ]


SECRETS = [Secret(name="POSTGRES_PASSWORD"), Secret(name="REDIS_PASSWORD")]


def estate(services: list | None = None, **changes) -> Estate:
    """The base estate, with services replaced by id through `changes` (id → dict of fields,
    or None to drop the service)."""
    result = []
    for s in services if services is not None else base_services():
        if s.id in changes:
            change = changes[s.id]
            if change is None:
                continue
            s = service(**{**{k: getattr(s, k) for k in type(s).model_fields}, **change})
        result.append(s)
    return Estate(services=tuple(result), secrets=tuple(SECRETS),
                  reserved_ports={4011: "kept free"})
