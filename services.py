"""The ManaCore estate: every service declared once (SPEC.md, "Target state").

Data only. Names, addresses, URLs and tiers are derived by `catalog.resolve`; ranges and
conventions are checked by `catalog.rules`. Legacy facts are what ran on the Mac Mini before
the Phase 0 cleanup (the seed's inventory).
"""

from __future__ import annotations

from catalog.model import (
    Broken,
    Estate,
    HostMount,
    Legacy,
    LegacyObjects,
    Public,
    Secret,
    Service,
    Volume,
    address_of,
    cmd,
    cmd_or_http,
    db_url,
    dump,
    hard,
    host_of,
    http,
    image,
    internal,
    lazy,
    many,
    once,
    own,
    port,
    port_of,
    public_url,
    redis_url,
    secret,
    service,
    url_of,
)

# --- availability: the assumptions our own images rest on, written once -------------------
# (third-party images say where upstream confirms theirs, next to each declaration)

OWN_STATELESS = ("assumed of our own HTTP services (NestJS backends, SvelteKit frontends, auth, "
                 "gateway, search): no state in the process, sessions, tokens and data live in "
                 "PostgreSQL and Redis, so copies are interchangeable")
OWN_MATRIX_BOT = ("assumed of our own Matrix bots: each follows its account's /sync and answers "
                  "every command, keeping its sync token in /data; a second copy would answer "
                  "twice and race on that token")
OWN_TELEGRAM_BOT = ("assumed of our own Telegram bots: they poll getUpdates, which Telegram "
                    "grants one poller per token (a second gets 409 Conflict, 'make sure that "
                    "only one bot instance is running': yagop/node-telegram-bot-api#550)")

# --- infrastructure ---------------------------------------------------------------------

# PostgreSQL keeps its cluster one level below the mount (a fresh claim may hold lost+found);
# the legacy volume held it at its root, so the migration moves that root into pgdata/.
PG_MOUNT, PG_DIR = "/var/lib/postgresql/data", "pgdata"

INFRA = [
    service(
        id="postgres", category="infra", role="datastore",
        description="PostgreSQL 16 with pgvector: one database and role per consumer",
        # Major 16 stays: the legacy data directory is 16 (a major upgrade is a migration of
        # its own). 0.8.2 fixed the buffer overflow of parallel HNSW builds (CVE-2026-3172,
        # pgvector#959). pgvector builds its image once per release (`--pull --no-cache`): the
        # PostgreSQL 16 minor inside is the one of that day (2026-07-29 for 0.8.6); a newer
        # minor comes with the next pgvector release. Bookworm, not -trixie: the legacy cluster's
        # text indexes were built with bookworm's glibc collation.
        image=image("pgvector/pgvector:0.8.6-pg16", scheme="semver-variant", family="debian",
                    tools=("pg_isready", "psql"),
                    writes=("/var/run/postgresql",),  # its Unix socket
                    confirmed="https://github.com/pgvector/pgvector/blob/v0.8.6/Dockerfile "
                    "(FROM postgres:$PG_MAJOR-$DEBIAN_CODENAME: the docker-library/postgres "
                    "entrypoint) and CHANGELOG.md (0.8.2: parallel HNSW build overflow fixed)",
                    arm64="https://github.com/pgvector/pgvector/blob/v0.8.6/Makefile "
                    "(docker-release: buildx --platform linux/amd64,linux/arm64, tags "
                    "<version>-pg<major> and -bookworm)",
                    checked="2026-12-07",
                    newest="0.8.6 (pgvector git tags, snapshot of 2026-08-19)",
                    # docker-library/postgres 16/bookworm/docker-entrypoint.sh, as root on
                    # every start: `mkdir -p "$PGDATA"` inside the mount point, which a fresh
                    # volume copies from the image as postgres:postgres 0700 (DAC_OVERRIDE: the
                    # real engine refused it without), `find "$PGDATA" \! -user postgres -exec
                    # chown postgres` (CHOWN), `chmod 00700 "$PGDATA"` and `chmod 03775
                    # /var/run/postgresql` on postgres-owned directories (FOWNER), then `exec
                    # gosu postgres` (SETUID, SETGID: setgroups/setgid/setuid)
                    caps=("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID")),
        ports=[port(5432, "postgres")],
        env={"POSTGRES_USER": "postgres", "POSTGRES_DB": "postgres",
             "PGDATA": f"{PG_MOUNT}/{PG_DIR}"},
        secrets=["POSTGRES_PASSWORD"],
        volumes=[Volume(path=PG_MOUNT, size="20Gi", legacy_dir=PG_DIR)],
        # backed up through the server: every database (pg_dump) and the roles (pg_dumpall)
        dump=dump("postgres", "POSTGRES_PASSWORD", port="postgres", user="postgres"),
        # over TCP: the entrypoint runs the init scripts on a socket-only server, which a
        # socket probe would already call ready (dependents then fail to connect: seen with
        # the real Synapse on a fresh volume; docker-library/postgres docker-entrypoint.sh)
        health=cmd("pg_isready", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres",
                   start_period=10),
        memory="768Mi",
        availability=once("user-facing", "one postmaster per data directory (it locks "
                          "postmaster.pid); a second server is a standby only through streaming "
                          "replication, which an operator such as CloudNativePG runs, not "
                          "obtainable here (postgresql.org/docs/16/high-availability.html)"),
        legacy=Legacy(containers=["manacore-postgres"], ports=[5432],
                      volumes=["manacore-postgres"]),
    ),
    service(
        id="redis", category="infra", role="datastore",
        description="Redis 7: session cache and pub/sub",
        # 7.4.9 fixes CVE-2026-23479, CVE-2026-25243 and CVE-2026-23631 (use-after-free and
        # invalid memory access, RCE), 7.4.10 a stream RESTORE use-after-free (RCE) (redis/redis
        # #15522, 2026-07-23); 7.4.6 had fixed CVE-2025-49844. The 7.4 line is still patched;
        # 8.x is another licence (RSALv2/SSPLv1/AGPLv3) with modules built in: not for a patch.
        image=image("redis:7.4.10-alpine", scheme="semver-variant", family="alpine",
                    tools=("redis-server", "redis-cli"),
                    confirmed="https://github.com/docker-library/redis/blob/master/7.4/alpine/"
                    "docker-entrypoint.sh and https://github.com/redis/docker-library-redis/"
                    "blob/master/alpine/docker-entrypoint.sh (both drop root for redis-server "
                    "only)",
                    arm64="https://github.com/docker-library/official-images/blob/master/"
                    "library/redis (alpine: arm64v8)",
                    checked="2026-12-07",
                    newest="7.4.10 (redis/redis#15522 'Release 7.4.10', 2026-07-23; no later "
                    "7.4 release found)",
                    # that entrypoint, as root with redis-server: `find . \! -user redis -exec
                    # chown redis` (CHOWN; walking the 0700 appendonlydir redis makes under its
                    # umask 0077: DAC_READ_SEARCH), then su-exec redis (SETUID, SETGID)
                    caps=("CHOWN", "DAC_READ_SEARCH", "SETGID", "SETUID")),
        # The entrypoint drops from root to the redis user (after chowning /data) only when its
        # first argument is redis-server (an option first gets redis-server put before it);
        # anything else, `sh -c …` included, it execs as root. So redis-server comes first and
        # the password is an argument each target fills in from the secret (Compose ${…},
        # Kubernetes $(REDIS_PASSWORD) from the container's environment), never a file.
        command=["redis-server", "--appendonly", "yes",
                 "--requirepass", secret("REDIS_PASSWORD")],
        ports=[port(6379, "redis")],
        secrets=["REDIS_PASSWORD"],
        volumes=[Volume(path="/data", size="2Gi")],
        dump=dump("redis", "REDIS_PASSWORD", port="redis"),  # its RDB, through the server
        # redis-cli reads the password from REDISCLI_AUTH: it never shows in a process list
        health=cmd("sh", "-c",
                   'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli ping | grep -q PONG'),
        memory="256Mi",
        availability=once("user-facing", "a second redis-server is another database, not a "
                          "copy; replicas need Redis replication with Sentinel failover "
                          "(redis.io/docs/latest/operate/oss_and_stack/management/sentinel/)"),
        legacy=Legacy(containers=["manacore-redis"], ports=[6379], volumes=["manacore-redis"]),
    ),
    service(
        id="s3", category="infra", role="infra",
        description="Garage: S3-compatible object storage (contact photos, files, backups); "
        "replaced MinIO, whose images are gone",
        # MinIO deleted minio/minio from Docker Hub (2026-09) and publishes source only: Garage
        # (Deuxfleurs, AGPL-3.0 like MinIO) is maintained, published for arm64, small (a Rust
        # binary, LMDB metadata) and made for several nodes over a WAN (zones, replication 3),
        # which is how the cluster grows over the tailnet. Its S3 covers what the apps and
        # backups use: buckets, objects, multipart, presigned URLs, keys per bucket. Not:
        # versioning, object lock, bucket policies, notifications. It has no web console, so
        # the console's public route is gone; the admin API (3903) stays internal.
        # Single node: `--single-node` lays out one node on first start and
        # `--default-access-key` creates the key the apps use (allowed to create buckets);
        # growing past one node drops the flag and adds nodes to the layout.
        image=image("dxflrs/garage:v2.5.0", package="crate:garage", scheme="v-semver",
                    family="scratch", tools=("/garage",),
                    confirmed="https://crates.io/crates/garage/2.5.0 (server.rs: --single-node, "
                    "--default-access-key reads GARAGE_DEFAULT_ACCESS_KEY/SECRET_KEY; secrets.rs: "
                    "GARAGE_RPC_SECRET, GARAGE_ADMIN_TOKEN; `garage health` exits 1 when the "
                    "cluster is unavailable) and https://github.com/deuxfleurs-org/garage/blob/"
                    "v2.0.0/Dockerfile (FROM scratch, /garage, CMD server, no USER)",
                    arm64="https://github.com/deuxfleurs-org/garage/blob/v2.0.0/.woodpecker/"
                    "release.yaml (ARCH amd64, i386, arm64, arm; publish.yaml multiarch_docker "
                    "pushes the git tag)",
                    checked="2026-12-07",
                    newest="v2.5.0 (crates.io garage 2.5.0; the Docker Hub tag list is not "
                    "reachable from here)"),
        # the image's CMD is `/garage server`: the whole argv (no ENTRYPOINT)
        command=["/garage", "server", "--single-node", "--default-access-key"],
        # 3900: S3 API; 3903: admin API (/metrics scraped, /health, token-guarded admin calls);
        # RPC (3901) stays inside the container until a second node joins
        ports=[port(9000, "api", container=3900), port(9001, "metrics", container=3903)],
        # garage.toml (data and metadata directories, region, listeners) is generated:
        # catalog/configs.py; every secret comes from the environment
        env={"GARAGE_DEFAULT_ACCESS_KEY": secret("S3_ACCESS_KEY"),
             "GARAGE_DEFAULT_SECRET_KEY": secret("S3_SECRET_KEY"),
             "GARAGE_RPC_SECRET": secret("S3_RPC_SECRET"),
             "GARAGE_ADMIN_TOKEN": secret("S3_ADMIN_TOKEN")},
        volumes=[Volume(path="/var/lib/garage", size="50Gi")],
        # scratch: Docker asks garage itself over RPC; the kubelet probes /health (503 when
        # the cluster has no quorum)
        health=cmd_or_http(("/garage", "health", "-q"), "/health", port="metrics",
                           start_period=10),
        memory="512Mi",
        # the object store: every bucket is backed up through its S3 API
        dump=dump("s3", "S3_ACCESS_KEY", "S3_SECRET_KEY", port="api"),
        # the apps' files: contacts and storage read them for their users
        availability=once("user-facing", "a single node holds the data (replication factor 1 "
                          "in garage.toml); more copies are more Garage nodes in its layout, each "
                          "with its own data, never copies of one pod (garagehq.deuxfleurs.fr "
                          "documentation: cookbook/real-world, layout)"),
        # The legacy MinIO volume is MinIO's on-disk format (xl.meta), which Garage cannot
        # read: it is never mounted; Phase 0 copies every object over S3 from a throwaway
        # server of the legacy image on it, checking each object's SHA-256
        # (exports/migration.py). The legacy container ran MinIO's pinned release:
        legacy=Legacy(containers=["manacore-minio"], ports=[9000, 9001],
                      volumes=["manacore-minio"],
                      objects=LegacyObjects(
                          image="minio/minio:RELEASE.2024-11-07T00-52-20Z",
                          command=("server", "/data", "--console-address", ":9001"), port=9000,
                          path="/data", access_key="MINIO_ROOT_USER",
                          secret_key="MINIO_ROOT_PASSWORD",
                          into_keys=("S3_ACCESS_KEY", "S3_SECRET_KEY"),
                          source="https://github.com/minio/minio/blob/RELEASE.2024-11-07T00-52-20Z"
                          "/Dockerfile.release (ENTRYPOINT minio; MINIO_ROOT_USER/PASSWORD)")),
    ),
    service(
        id="cloudflared", category="infra", role="infra",
        description="Cloudflare Tunnel connector: the only way in from outside",
        image=image("cloudflare/cloudflared:2026.8.2",
                    package="go:github.com/cloudflare/cloudflared", scheme="calver",
                    family="distroless", tools=("cloudflared",),
                    confirmed="https://github.com/cloudflare/cloudflared/blob/2026.8.2/"
                    "Dockerfile (distroless/base-debian13:nonroot, USER 65532, ENTRYPOINT "
                    "cloudflared --no-autoupdate)",
                    arm64="https://github.com/cloudflare/cloudflared/blob/2026.8.2/"
                    "Dockerfile.arm64",
                    checked="2026-12-07",
                    newest="2026.8.2 (cloudflared git tags, snapshot of 2026-08-20)"),
        command=["tunnel", "--no-autoupdate", "--metrics", "0.0.0.0:2000", "run"],
        ports=[internal(2000, "metrics")],
        secrets=["TUNNEL_TOKEN"],
        # distroless: Docker asks cloudflared itself; the kubelet probes /ready on metrics
        health=cmd_or_http(("cloudflared", "tunnel", "--metrics", "127.0.0.1:2000", "ready"),
                           "/ready", port="metrics"),
        memory="128Mi",
        availability=many("user-facing", "replicas of one tunnel: each connector holds its own "
                          "connections to the edge, which sends a request to any of them "
                          "(developers.cloudflare.com/cloudflare-one/connections/connect-"
                          "networks/deploy-tunnels/deploy-cloudflared-replicas/)"),
        internet="Cloudflare's edge: the tunnel (QUIC or HTTP/2 on port 7844)",
    ),
]

# --- core: auth, gateway, search ---------------------------------------------------------

CORE = [
    service(
        id="auth", category="core", role="core",
        description="mana-core-auth: central authentication (Better Auth, EdDSA JWT)",
        image=own("mana-core-auth"),
        ports=[port(3001)],
        env={"PORT": port_of("auth"), "NODE_ENV": "production", "DATABASE_URL": db_url(),
             "REDIS_URL": redis_url(0), "BASE_URL": public_url("auth")},
        secrets=["BETTER_AUTH_SECRET"],
        database="auth",
        needs=[hard("postgres"), hard("redis")],
        health=http("/health", start_period=20),
        memory="256Mi",
        availability=many("user-facing", OWN_STATELESS),
        public=Public(host="auth"),
        legacy=Legacy(containers=["mana-core-auth"], ports=[3001]),
    ),
    service(
        id="gateway", category="core", role="gateway",
        description="mana-api-gateway: public API and monetisation; only auth is critical",
        image=own("mana-api-gateway"),
        ports=[port(3010)],
        env={"PORT": port_of("gateway"), "NODE_ENV": "production",
             "AUTH_URL": url_of("auth"), "SEARCH_URL": url_of("search"),
             "DATABASE_URL": db_url(), "REDIS_URL": redis_url(1)},
        database="gateway",
        needs=[hard("auth"), lazy("search"), lazy("postgres"), lazy("redis")],
        health=http("/health", start_period=20),
        memory="192Mi",
        availability=many("user-facing", OWN_STATELESS),
        public=Public(host="api"),
        legacy=Legacy(containers=["mana-api-gateway"], ports=[3030]),
    ),
    service(
        id="search", category="core", role="core",
        description="mana-search: NestJS search service over SearXNG",
        image=own("mana-search"),
        ports=[port(3020)],
        env={"PORT": port_of("search"), "NODE_ENV": "production",
             "SEARXNG_URL": url_of("searxng"), "REDIS_URL": redis_url(2)},
        needs=[hard("searxng"), lazy("redis")],
        health=http("/health", start_period=15),
        memory="128Mi",
        availability=many("user-facing", OWN_STATELESS),
        legacy=Legacy(containers=["mana-search"], ports=[3021]),
    ),
    service(
        id="searxng", category="core", role="core",
        description="SearXNG meta search engine (internal only)",
        # tag = commit date + abbreviated hash of a master commit (searx/version.py), built
        # and pushed by .github/workflows/container.yml for amd64, arm64 and armv7
        image=image("searxng/searxng:2026.8.22-9fea41204", scheme="searxng",
                    family="posix-sh", tools=("/usr/local/searxng/.venv/bin/python",),
                    writes=("/etc/searxng", "/var/cache/searxng"),
                    confirmed="https://github.com/searxng/searxng/commit/"
                    "9fea41204fdfa7a5cfa15b0ebd12904c520478ce (container/dist.dockerfile, "
                    "container/entrypoint.sh; the image is pushed once the commit's "
                    "Integration run passed, which was not visible from here)",
                    arm64="https://github.com/searxng/searxng/blob/9fea41204/.github/workflows/"
                    "container.yml (arch: amd64, arm64, armv7)",
                    checked="2026-12-07",
                    newest="2026.8.22-9fea41204 (newest master commit, snapshot of 2026-08-22)",
                    # container/entrypoint.sh setup_ownership: as root it `chown -R
                    # searxng:searxng` the config and data volumes and settings.yml (CHOWN);
                    # it never steps down with gosu/su-exec
                    caps=("CHOWN",)),
        ports=[internal(8080)],
        # settings.yml (json enabled) is generated: catalog/configs.py; the secret key and the
        # base URL override it from the environment
        env={"SEARXNG_BASE_URL": url_of("searxng", path="/")},
        secrets=["SEARXNG_SECRET"],
        # neither wget nor curl is known in its base: ask the image's own Python; the kubelet
        # probes the path itself
        health=cmd_or_http(("/usr/local/searxng/.venv/bin/python", "-c",
                            "import urllib.request; urllib.request.urlopen("
                            "'http://127.0.0.1:8080/healthz', timeout=4)"),
                           "/healthz", start_period=10),
        memory="192Mi",
        availability=many("user-facing", "stateless: preferences live in the user's cookie; "
                          "the one shared state, the limiter's counters in Valkey, is off here "
                          "(docs.searxng.org/admin/settings/settings_valkey.html; "
                          "catalog/configs.py)"),
        internet="the public search engines it queries",
        legacy=Legacy(containers=["mana-searxng"]),
    ),
]

# --- native macOS services (not containers) ----------------------------------------------

NATIVE = [
    service(id="stt", category="native", role="ai", description="mana-stt: Whisper speech-to-text",
            ports=[port(3021)], health=http("/health"), legacy=Legacy(ports=[3020])),
    service(id="tts", category="native", role="ai", description="mana-tts: Kokoro text-to-speech",
            ports=[port(3022)], health=http("/health"), legacy=Legacy(ports=[3022])),
    service(id="image-gen", category="native", role="ai",
            description="mana-image-gen: Stable Diffusion", ports=[port(3025)],
            health=http("/health"), legacy=Legacy(ports=[3025])),
    service(id="ollama", category="native", role="llm",
            description="Ollama LLM runtime (Gemma 3 4B)", ports=[port(11434)],
            health=http("/api/version"), legacy=Legacy(ports=[11434])),
]

# --- apps: nine backends, their web frontends, the dashboard and the LLM playground ------

# app → (new backend port, legacy backend port, new web port, legacy web port)
APPS: dict[str, tuple[int, int, int, int]] = {
    "chat": (3030, 3002, 5010, 3000),
    "todo": (3031, 3018, 5011, 5188),
    "calendar": (3032, 3016, 5012, 5186),
    "clock": (3033, 3017, 5013, 5187),
    "contacts": (3034, 3015, 5014, 5184),
    "storage": (3035, 3019, 5015, 5185),
    "presi": (3036, 3008, 5016, 5178),
    "nutriphi": (3037, 3023, 5017, 5189),
    "skilltree": (3038, 3024, 5018, 5195),
}

S3_ENV = {"S3_ENDPOINT": url_of("s3", "api"), "S3_ACCESS_KEY": secret("S3_ACCESS_KEY"),
          "S3_SECRET_KEY": secret("S3_SECRET_KEY")}
OLLAMA_ENV = {"OLLAMA_URL": url_of("ollama"), "OLLAMA_MODEL": "gemma3:4b"}

# What single apps need beyond the common backend: env, secrets, extra needs, memory.
APP_EXTRAS: dict[str, dict] = {
    "chat": {"env": OLLAMA_ENV, "needs": [lazy("ollama")], "memory": "256Mi"},
    "contacts": {"env": S3_ENV, "needs": [lazy("s3")]},
    "storage": {"env": S3_ENV, "needs": [lazy("s3")]},
    "nutriphi": {"secrets": ["GEMINI_API_KEY"], "internet": "Google's Gemini API"},
}


def _backend(app: str, new: int, legacy: int) -> Service | Broken:
    sid, extra = f"{app}-backend", APP_EXTRAS.get(app, {})
    return service(
        id=sid, category="app", role="backend", description=f"{app} API",
        image=own(sid),
        ports=[port(new)],
        env={"PORT": port_of(sid), "NODE_ENV": "production", "DATABASE_URL": db_url(),
             "AUTH_URL": url_of("auth"), **extra.get("env", {})},
        secrets=extra.get("secrets", []),
        database=app,
        needs=[hard("postgres"), hard("auth"), *extra.get("needs", [])],
        health=http("/health", start_period=20),
        memory=extra.get("memory", "192Mi"),
        availability=many("user-facing", OWN_STATELESS),
        internet=extra.get("internet"),
        public=Public(host=f"{app}-api"),
        legacy=Legacy(containers=[sid], ports=[legacy]),
    )


def _web(app: str, new: int, legacy: int) -> Service | Broken:
    sid, backend = f"{app}-web", f"{app}-backend"
    return service(
        id=sid, category="app", role="frontend", description=f"{app} web frontend (SvelteKit)",
        image=own(sid),
        ports=[port(new)],
        env={"PORT": port_of(sid), "ORIGIN": public_url(sid), "BACKEND_URL": url_of(backend),
             "PUBLIC_BACKEND_URL": public_url(backend), "PUBLIC_AUTH_URL": public_url("auth")},
        needs=[lazy(backend), lazy("auth")],
        health=http("/", start_period=10),
        memory="96Mi",
        availability=many("user-facing", OWN_STATELESS),
        public=Public(host=app),
        legacy=Legacy(containers=[sid], ports=[legacy]),
    )


APP = [
    *(_backend(app, new, old) for app, (new, old, _, _) in APPS.items()),
    *(_web(app, new, old) for app, (_, _, new, old) in APPS.items()),
    service(
        id="dashboard-web", category="app", role="frontend",
        description="manacore-web: the ManaCore dashboard",
        image=own("manacore-web"),
        ports=[port(5000)],
        env={"PORT": port_of("dashboard-web"), "ORIGIN": public_url("dashboard-web"),
             "PUBLIC_AUTH_URL": public_url("auth"), "PUBLIC_API_URL": public_url("gateway"),
             "AUTH_URL": url_of("auth"), "API_URL": url_of("gateway")},
        needs=[lazy("auth"), lazy("gateway")],
        health=http("/", start_period=10),
        memory="96Mi",
        availability=many("user-facing", OWN_STATELESS),
        public=Public(host="app"),
        legacy=Legacy(containers=["manacore-web"], ports=[5173]),
    ),
    service(
        id="llm-playground", category="app", role="frontend",
        description="LLM playground against the local Ollama",
        image=own("llm-playground"),
        ports=[port(5090)],
        env={"PORT": port_of("llm-playground"), "ORIGIN": public_url("llm-playground"),
             **OLLAMA_ENV},
        needs=[lazy("ollama")],
        health=http("/", start_period=10),
        memory="96Mi",
        availability=many("operator", OWN_STATELESS),
        # anyone reaching it spends the Mac Mini's Ollama compute: behind Access like the admin UIs
        public=Public(host="playground", access=True),
        legacy=Legacy(containers=["llm-playground"], ports=[5190]),
    ),
]

# --- Matrix: Synapse, two clients, three bots (ten before the consolidation) -------------

BOTS_VOLUME = "manacore-matrix-bots-data"  # one volume, a subdirectory per bot (Docker)
MATRIX_ENV = {"MATRIX_HOMESERVER_URL": url_of("synapse")}

MATRIX = [
    service(
        id="synapse", category="matrix", role="matrix",
        description="Synapse homeserver",
        # public-facing: at least 1.120.1, the security release of 2024-12-03 (CHANGES.md)
        image=image("matrixdotorg/synapse:v1.163.2", package="pypi:matrix-synapse",
                    scheme="v-semver", family="debian", tools=("curl", "python"),
                    confirmed="https://github.com/element-hq/synapse/blob/v1.157.1/docker/"
                    "Dockerfile (/start.py, SYNAPSE_CONFIG_PATH, curl for its HEALTHCHECK) and "
                    "docker/start.py (run mode: as root, gosu 991:991; /data is not chowned, so "
                    "a fresh volume fails with PermissionError on /data/media_store)",
                    runs_as="991:991",
                    # start.py's run mode only steps down (gosu 991:991, no chown): SETUID,
                    # SETGID; the volume is handed to 991:991 by its init beforehand
                    caps=("SETGID", "SETUID"),
                    arm64="https://github.com/element-hq/synapse/blob/v1.157.1/.github/"
                    "workflows/docker.yml (platform linux/arm64; every release tag is built)",
                    checked="2026-12-07",
                    newest="v1.163.2 (PyPI matrix-synapse 1.163.2, 2026-10; the image contract "
                    "was read at v1.157.1, the newest tag of the repository snapshot)"),
        ports=[port(4000, container=8008), port(4001, "metrics", container=9002)],
        # homeserver.yaml (database, listeners, secrets) is generated: catalog/configs.py
        env={"SYNAPSE_CONFIG_PATH": "/config/homeserver.yaml"},
        secrets=["SYNAPSE_REGISTRATION_SHARED_SECRET", "SYNAPSE_MACAROON_SECRET_KEY",
                 "SYNAPSE_SIGNING_KEY"],
        database="synapse",
        volumes=[Volume(path="/data", size="20Gi")],
        needs=[hard("postgres")],
        health=http("/health", start_period=30),
        memory="512Mi",
        availability=once("user-facing", "one main process (monolith mode); Synapse scales by "
                          "workers with roles of their own and a Redis replication stream, never "
                          "by copies of the main process, and its media store is this volume "
                          "(element-hq.github.io/synapse/latest/workers.html)"),
        internet="Matrix federation with other homeservers",
        # the admin API (users, rooms, media deletion) only from inside: the tunnel answers 404
        public=Public(host="matrix", closed_paths=["/_synapse/admin"]),
        legacy=Legacy(containers=["manacore-synapse"], ports=[8008, 9002],
                      volumes=["synapse_data"], unverified=["synapse_data"]),
    ),
    service(
        id="mana-bot", category="matrix", role="matrix",
        description="Unified Matrix bot: !mana !todo !cal !clock !nutri !zitat !tts",
        image=own("matrix-mana-bot"),
        ports=[port(4010)],
        env={"PORT": port_of("mana-bot"), **MATRIX_ENV, **OLLAMA_ENV,
             "TODO_API_URL": url_of("todo-backend"), "CALENDAR_API_URL": url_of("calendar-backend"),
             "CLOCK_API_URL": url_of("clock-backend"),
             "NUTRIPHI_API_URL": url_of("nutriphi-backend"), "TTS_URL": url_of("tts")},
        secrets=["MATRIX_MANA_BOT_TOKEN"],
        volumes=[Volume(path="/data", name=BOTS_VOLUME, subpath="mana-bot", shared=True)],
        needs=[hard("synapse"), lazy("ollama"), lazy("todo-backend"), lazy("calendar-backend"),
               lazy("clock-backend"), lazy("nutriphi-backend"), lazy("tts")],
        health=http("/health", start_period=15),
        memory="256Mi",
        availability=once("user-facing", OWN_MATRIX_BOT),
        legacy=Legacy(
            containers=["manacore-matrix-mana-bot", "manacore-matrix-ollama-bot",
                        "manacore-matrix-todo-bot", "manacore-matrix-calendar-bot",
                        "manacore-matrix-nutriphi-bot", "manacore-matrix-zitare-bot",
                        "manacore-matrix-clock-bot", "manacore-matrix-tts-bot"],
            ports=[3310, 3311, 3314, 3315, 3316, 3317, 3318, 3033],
            volumes=["matrix_mana_bot_data", "matrix_ollama_bot_data", "matrix_todo_bot_data",
                     "matrix_calendar_bot_data", "matrix_nutriphi_bot_data",
                     "matrix_zitare_bot_data", "matrix_clock_bot_data", "matrix_tts_bot_data"]),
    ),
    service(
        id="stats-bot", category="matrix", role="matrix",
        description="Matrix stats bot: scheduled reports",
        image=own("matrix-stats-bot"),
        ports=[port(4012)],
        env={"PORT": port_of("stats-bot"), **MATRIX_ENV,
             "VICTORIAMETRICS_URL": url_of("victoriametrics")},
        secrets=["MATRIX_STATS_BOT_TOKEN"],
        volumes=[Volume(path="/data", name=BOTS_VOLUME, subpath="stats-bot", shared=True)],
        needs=[hard("synapse"), lazy("victoriametrics")],
        health=http("/health", start_period=15),
        memory="128Mi",
        availability=once("background", OWN_MATRIX_BOT),  # scheduled reports
        legacy=Legacy(containers=["manacore-matrix-stats-bot"], ports=[3312],
                      volumes=["matrix_stats_bot_data"]),
    ),
    service(
        id="project-doc-bot", category="matrix", role="matrix",
        description="Matrix project documentation bot: RAG with embeddings in PostgreSQL",
        image=own("matrix-project-doc-bot"),
        ports=[port(4013)],
        env={"PORT": port_of("project-doc-bot"), **MATRIX_ENV, **OLLAMA_ENV,
             "DATABASE_URL": db_url()},
        secrets=["MATRIX_PROJECT_DOC_BOT_TOKEN"],
        database="project_doc",
        volumes=[Volume(path="/data", name=BOTS_VOLUME, subpath="project-doc-bot",
                       shared=True)],
        needs=[hard("synapse"), hard("postgres"), lazy("ollama")],
        health=http("/health", start_period=15),
        memory="256Mi",
        availability=once("user-facing", OWN_MATRIX_BOT),
        legacy=Legacy(containers=["manacore-matrix-project-doc-bot"], ports=[3313],
                      volumes=["matrix_project_doc_bot_data"]),
    ),
    service(
        id="element-web", category="matrix", role="matrix",
        description="Element web client",
        # non-root (user nginx, 101) since v1.11.90 (element-hq/element-web#28849); below it
        # nginx needs root and crash-loops under the pod's runAsUser. v1.12.29, the former pin,
        # could not be confirmed anywhere; v1.12.26 is what Element's own chart deploys. Its
        # entrypoint copies /app/config*.json to /tmp/element-web-config and nginx's envsubst
        # writes /etc/nginx/conf.d from the template that listens on ELEMENT_WEB_PORT: with a
        # port above 1024 and those paths writable it runs on a read-only root, without the
        # unprivileged-port sysctl.
        image=image("vectorim/element-web:v1.12.26", scheme="v-semver", family="alpine",
                    tools=("nginx",), writes=("/var/cache/nginx", "/etc/nginx/conf.d"),
                    confirmed="https://github.com/element-hq/element-web/pull/28849 (Dockerfile:"
                    " USER nginx, ELEMENT_WEB_PORT=80, wget HEALTHCHECK), pull/29353 (base "
                    "nginxinc/nginx-unprivileged:alpine-slim), docker/docker-entrypoint.d/"
                    "18-load-element-modules.sh and docker/nginx-templates/default.conf.template",
                    arm64="https://github.com/element-hq/element-web/blob/develop/.github/"
                    "workflows/docker.yaml (on tags v*: platforms linux/amd64,linux/arm64)",
                    checked="2026-12-07",
                    newest="v1.12.26 (element-hq/ess-helm 'Upgrade Element Web to v1.12.26', "
                    "2026-08-18; v1.12.28 seen in a third-party compose file, not confirmed)"),
        ports=[port(4080, container=8080)],
        env={"ELEMENT_WEB_PORT": port_of("element-web")},
        needs=[lazy("synapse")],
        health=http("/"),
        memory="64Mi",
        availability=many("user-facing", "static files served by nginx (element-hq/element-web "
                          "Dockerfile: the built app in nginx-unprivileged); nothing is kept "
                          "between requests"),
        public=Public(host="element"),
        legacy=Legacy(containers=["manacore-element"], ports=[8087]),
    ),
    service(
        id="matrix-web", category="matrix", role="matrix",
        description="Custom SvelteKit Matrix client",
        image=own("matrix-web"),
        ports=[port(4090)],
        env={"PORT": port_of("matrix-web"), "ORIGIN": public_url("matrix-web"),
             "PUBLIC_HOMESERVER_URL": public_url("synapse")},
        needs=[lazy("synapse")],
        health=http("/", start_period=10),
        memory="128Mi",
        availability=many("user-facing", OWN_STATELESS),
        public=Public(host="messenger"),
        legacy=Legacy(containers=["manacore-matrix-web"], ports=[5180]),
    ),
]

# --- monitoring --------------------------------------------------------------------------

MON = [
    service(
        id="victoriametrics", category="mon", role="infra",
        description="VictoriaMetrics: metrics database, UI at /vmui (not public)",
        # the current release line (the v1.136 LTS line gets fixes too; a current one keeps
        # Renovate's pull requests small)
        image=image("victoriametrics/victoria-metrics:v1.154.1",
                    package="go:github.com/VictoriaMetrics/VictoriaMetrics", scheme="v-semver",
                    family="alpine", tools=("/victoria-metrics-prod",),
                    confirmed="https://github.com/VictoriaMetrics/VictoriaMetrics/blob/v1.150.0/"
                    "deployment/docker/Makefile (ROOT_IMAGE alpine:3.24.1; the -scratch tags "
                    "are the scratch ones) and app/victoria-metrics/deployment/Dockerfile "
                    "(ENTRYPOINT /victoria-metrics-prod); read at v1.150.0, the snapshot's newest",
                    arm64="https://github.com/VictoriaMetrics/VictoriaMetrics/blob/v1.150.0/"
                    "deployment/docker/Makefile (publish-via-docker: linux/arm64)",
                    checked="2026-12-07",
                    newest="v1.154.1 (Go module proxy, 2026-10-19)"),
        # the scrape targets file is generated from the catalogue: catalog/configs.py
        command=["-storageDataPath=/storage", "-retentionPeriod=90d", "-httpListenAddr=:8428",
                 "-promscrape.config=/etc/victoriametrics/scrape.yml"],
        ports=[port(9090, container=8428)],
        volumes=[Volume(path="/storage", size="20Gi")],
        health=http("/health"),
        memory="512Mi",
        availability=once("background", "single-node VictoriaMetrics keeps its data on this "
                          "volume; HA is several nodes each fed all the traffic, or the cluster "
                          "version (docs.victoriametrics.com/victoriastack/deployment/)"),
        legacy=Legacy(containers=["manacore-victoriametrics"], ports=[8428],
                      volumes=["victoriametrics_data"], unverified=["victoriametrics_data"]),
    ),
    service(
        id="grafana", category="mon", role="dashboard",
        description="Grafana dashboards (behind Cloudflare Access)",
        # 11.3 is out of support; 13.2 is the current line
        image=image("grafana/grafana:13.2.3", package="go:github.com/grafana/grafana",
                    scheme="semver", family="alpine", tools=("grafana",),
                    confirmed="https://github.com/grafana/grafana/blob/78515af65f036f536c4ab2e6fdb54"
                    "84552f99f1f/Dockerfile (BASE_IMAGE alpine, curl, USER 472, /run.sh; read at "
                    "a 2025 revision, not at 13.2.3)",
                    arm64="https://hub.docker.com/r/grafana/grafana (linux/arm64 in the "
                    "tag's manifest list; not re-read from the build source)",
                    checked="2026-12-07",
                    newest="13.2.3 (npm @grafana/data 13.2.3, released with Grafana, "
                    "2026-09-29; 12.4.10 on the previous major)"),
        ports=[port(8000, container=3000)],
        # the datasource's URL is in its provisioning file (catalog/configs.py): no env for it
        env={"GF_SERVER_ROOT_URL": public_url("grafana"), "GF_ANALYTICS_REPORTING_ENABLED":
             "false", "GF_SECURITY_ADMIN_PASSWORD": secret("GRAFANA_ADMIN_PASSWORD")},
        volumes=[Volume(path="/var/lib/grafana", size="2Gi")],
        needs=[lazy("victoriametrics")],
        health=http("/api/health", start_period=15),
        memory="256Mi",
        availability=once("operator", "users and dashboards in an embedded SQLite on its "
                          "volume; several copies need a shared MySQL or PostgreSQL (grafana.com/"
                          "docs/grafana/v11.3/setup-grafana/set-up-for-high-availability/)"),
        public=Public(host="grafana", access=True),
        legacy=Legacy(containers=["manacore-grafana"], ports=[3100], volumes=["grafana_data"],
                      unverified=["grafana_data"]),
    ),
    service(
        id="umami", category="mon", role="dashboard",
        description="Umami web analytics (behind Cloudflare Access)",
        # v3 publishes plain versions (3.1.0; postgresql-v2.x was the v2 scheme, whose line
        # ends at 2.20.2 on Node 18, end of life). It writes nothing under /app at start
        # (scripts/update-tracker.js only with COLLECT_API_ENDPOINT, unset here): a read-only
        # root with its home and Next's cache writable.
        image=image("ghcr.io/umami-software/umami:3.1.0", scheme="semver", family="alpine",
                    tools=("node", "curl"), writes=("/home/nextjs", "/app/.next/cache"),
                    confirmed="https://github.com/umami-software/umami/blob/v3.1.0/Dockerfile "
                    "(node:22-alpine, apk add curl, USER nextjs 1001, CMD pnpm start-docker: "
                    "check-db, update-tracker, node server.js)",
                    arm64="https://github.com/umami-software/umami/blob/v3.1.0/.github/"
                    "workflows/cd.yml (platforms linux/amd64,linux/arm64; GHCR tags <version>, "
                    "<major>.<minor>, <major>)",
                    checked="2026-12-07",
                    newest="3.1.0 (umami git tags, snapshot of 2026-05-14)"),
        ports=[port(8010, container=3000)],
        env={"DATABASE_URL": db_url(), "DATABASE_TYPE": "postgresql",
             "APP_SECRET": secret("UMAMI_APP_SECRET")},
        database="umami",
        needs=[hard("postgres")],
        health=http("/api/heartbeat", start_period=20),
        memory="256Mi",
        availability=many("operator", "its login tokens are signed with APP_SECRET and its "
                          "data is in PostgreSQL (umami-software/umami src/lib/auth.ts, v2: "
                          "createSecureToken; Redis only when REDIS_URL is set, unset here)"),
        # the tracker that every frontend loads stays open; the dashboard needs a login
        public=Public(host="umami", access=True, open_paths=["/script.js", "/api/send"]),
        legacy=Legacy(containers=["manacore-umami"], ports=[3200]),
    ),
    service(
        id="pushgateway", category="mon", role="exporter",
        description="Prometheus Pushgateway for batch metrics",
        image=image("prom/pushgateway:v1.11.5", package="go:github.com/prometheus/pushgateway",
                    scheme="v-semver", family="prom-busybox", tools=("/bin/pushgateway",),
                    confirmed="https://github.com/prometheus/pushgateway/blob/v1.11.3/Dockerfile "
                    "(FROM quay.io/prometheus/busybox, USER 65534; read at v1.11.3)",
                    arm64="https://github.com/prometheus/pushgateway/blob/v1.11.3/"
                    "Makefile.common (DOCKER_ARCHS … arm64)",
                    checked="2026-12-07",
                    newest="v1.11.5 (Go module proxy, 2026-10-21)"),
        ports=[port(9091)],
        health=http("/-/healthy"),
        memory="64Mi",
        availability=once("background", "a metrics cache in memory (prometheus/pushgateway "
                          "README, Non-goals): a push to one copy behind the Service would be "
                          "missing from the other"),
        legacy=Legacy(containers=["manacore-pushgateway"], ports=[9091]),
    ),
    service(
        id="node-exporter", category="mon", role="exporter", workload="daemon",
        description="Host metrics; a DaemonSet on Kubernetes",
        image=image("prom/node-exporter:v1.12.1",
                    package="go:github.com/prometheus/node_exporter", scheme="v-semver",
                    family="prom-busybox", tools=("/bin/node_exporter",),
                    confirmed="https://github.com/prometheus/node_exporter/blob/v1.12.1/"
                    "Dockerfile (FROM quay.io/prometheus/busybox, USER nobody)",
                    arm64="https://github.com/prometheus/node_exporter/blob/v1.12.1/"
                    "Makefile.common (DOCKER_ARCHS … arm64)",
                    checked="2026-12-07",
                    newest="v1.12.1 (Go module proxy, 2026-07-14)"),
        ports=[port(9100, "metrics")],
        # Host metrics need the host's view: in its own network and PID namespaces it would
        # report the pod's interfaces and processes. SPEC makes this DaemonSet the one
        # exception to "no hostPath" on Kubernetes (kube-prometheus runs it the same way): host
        # network and PID, and the host's /proc, /sys and / read-only; on Docker the same
        # mounts. One pod per node, each scraped at its node's address (catalog/configs.py).
        # On Docker it keeps the container's network and PID namespaces (host networking would
        # publish 9100 on every interface): it reports the kernel that runs the containers —
        # on the Mac Mini that is Docker Desktop's Linux VM (its CPU, memory, load and the file
        # systems it mounts), never macOS itself — and its network metrics are the container's
        # own interface, not the host's.
        host_access=True,
        host_mounts=[HostMount(source="/proc", path="/host/proc", arg="--path.procfs=/host/proc"),
                     HostMount(source="/sys", path="/host/sys", arg="--path.sysfs=/host/sys"),
                     HostMount(source="/", path="/rootfs", arg="--path.rootfs=/rootfs")],
        health=http("/", port="metrics"),
        memory="64Mi",
        availability=once("background", "one pod per node reports that node (a DaemonSet); "
                          "a second on the node would report it twice"),
        legacy=Legacy(containers=["manacore-node-exporter"], ports=[9100]),
    ),
    service(
        id="redis-exporter", category="mon", role="exporter",
        description="Redis metrics",
        image=image("oliver006/redis_exporter:v1.97.0",
                    package="go:github.com/oliver006/redis_exporter", scheme="v-semver",
                    family="scratch", tools=("/redis_exporter",),
                    confirmed="https://github.com/oliver006/redis_exporter/blob/v1.88.0/"
                    "Dockerfile (scratch-release: FROM scratch, USER 59000; read at v1.88.0)",
                    arm64="https://github.com/oliver006/redis_exporter/blob/v1.88.0/.github/"
                    "workflows/release.yml (platforms linux/amd64,linux/arm,linux/arm64)",
                    checked="2026-12-07",
                    newest="v1.97.0 (Go module proxy, 2026-11-03)"),
        ports=[port(9121, "metrics")],
        env={"REDIS_ADDR": url_of("redis", "redis", scheme="redis"),
             "REDIS_PASSWORD": secret("REDIS_PASSWORD")},
        needs=[lazy("redis")],
        memory="32Mi",
        availability=many("background", "stateless: every scrape asks Redis afresh "
                          "(oliver006/redis_exporter README)"),
        legacy=Legacy(containers=["manacore-redis-exporter"], ports=[9121]),
    ),
    service(
        id="postgres-exporter", category="mon", role="exporter",
        description="PostgreSQL metrics",
        # 0.20 renamed the replication_slot collector (not configured here)
        image=image("prometheuscommunity/postgres-exporter:v0.20.1", scheme="v-semver",
                    family="prom-busybox", tools=("/bin/postgres_exporter",),
                    confirmed="https://github.com/prometheus-community/postgres_exporter/blob/"
                    "v0.20.1/exporter/datasource.go (getDataSources) and "
                    "Dockerfile (FROM quay.io/prometheus/busybox, USER nobody)",
                    arm64="https://github.com/prometheus-community/postgres_exporter/blob/"
                    "v0.20.1/Makefile.common (DOCKER_ARCHS … arm64)",
                    checked="2026-12-07",
                    newest="v0.20.1 (git tags, snapshot of 2026-08-18; the Go module proxy "
                    "refuses this module)"),
        ports=[port(9187, "metrics")],
        # the exporter builds "postgresql://" + user:pass + "@" + DATA_SOURCE_URI itself, so the
        # URI is host:port/db?params, without a scheme (exporter/datasource.go, v0.20.1)
        env={"DATA_SOURCE_URI": address_of("postgres", "postgres",
                                           path="/postgres?sslmode=disable"),
             "DATA_SOURCE_USER": "postgres_exporter",
             "DATA_SOURCE_PASS": secret("POSTGRES_EXPORTER_DB_PASSWORD")},
        pg_monitor="postgres_exporter",  # statistics only, never the superuser
        needs=[lazy("postgres")],
        # /metrics answers while the database is unreachable (pg_up 0): healthy means connected
        health=cmd("sh", "-c",
                   "wget -qO- http://127.0.0.1:9187/metrics | grep -q '^pg_up 1'"),
        memory="64Mi",
        availability=many("background", "stateless: every scrape queries PostgreSQL afresh "
                          "(prometheus-community/postgres_exporter README)"),
        legacy=Legacy(containers=["manacore-postgres-exporter"], ports=[9187]),
    ),
    service(
        id="cadvisor", category="mon", role="exporter", targets=["docker"],
        description="Container metrics; Docker only (the kubelet has cAdvisor built in)",
        # v0.54.0 reads Docker's containerd image store (the default of fresh Engine 29 and
        # Docker Desktop installs; google/cadvisor 7eda1904 'add containerd-snapshotter
        # support'): older releases show no per-container metrics there. Since v0.53.0 the
        # images are published on ghcr.io only (README: gcr.io for older versions).
        image=image("ghcr.io/google/cadvisor:v0.61.1", package="go:github.com/google/cadvisor",
                    scheme="v-semver", family="alpine", tools=("/usr/bin/cadvisor",),
                    confirmed="https://github.com/google/cadvisor/blob/v0.60.5/deploy/"
                    "Dockerfile (alpine:3.23, ENTRYPOINT entrypoint.sh exec cadvisor, "
                    "healthcheck.sh with wget on /healthz; read at v0.60.5)",
                    arm64="https://github.com/google/cadvisor/blob/v0.60.5/.github/workflows/"
                    "publish-container.yml (on tags v*: ghcr.io, linux/amd64,linux/arm64)",
                    checked="2026-12-07",
                    newest="v0.61.1 (Go module proxy, 2026-11-18)",
                    # the documented exception: it reads every container's cgroups and the
                    # host's file systems as root (README "Running cAdvisor" lists
                    # --privileged); dropping capabilities blinds it
                    default_caps="reads the host's cgroups and file systems (google/cadvisor "
                    "README: run with --privileged)"),
        ports=[port(9110, "metrics", container=8080)],
        host_mounts=[HostMount(source="/", path="/rootfs"),
                     HostMount(source="/var/run", path="/var/run",
                               root_equivalent="cAdvisor asks the Docker daemon for container "
                               "names and labels over /var/run/docker.sock"),
                     HostMount(source="/sys", path="/sys"),
                     HostMount(source="/var/lib/docker", path="/var/lib/docker")],
        health=http("/healthz", port="metrics"),
        memory="128Mi",
        availability=once("background", "it reads its host's containers: one per host "
                          "(google/cadvisor README, Quick Start)"),
        legacy=Legacy(containers=["manacore-cadvisor"], ports=[8080]),
    ),
]

# --- tools: automation ------------------------------------------------------------------

TOOLS = [
    service(
        id="n8n", category="tools", role="automation",
        description="n8n workflow automation (behind Cloudflare Access)",
        # 1.68.0 was open to unauthenticated RCE through form webhooks (CVE-2026-21858, fixed
        # in 1.121.0) and CVE-2025-68613 (1.123.0). 2.x, read before choosing it (docs.n8n.io
        # release-notes/v20-breaking-changes): Code runs on task runners (internal mode here,
        # in the same container), Code cannot read the environment, ExecuteCommand and
        # LocalFileTrigger are off, OAuth callbacks need a login, file nodes only reach
        # ~/.n8n-files, the Start node and MySQL storage are gone (this estate uses
        # PostgreSQL), active/inactive became publish/unpublish.
        image=image("n8nio/n8n:2.41.3", package="npm:n8n", scheme="semver", family="alpine",
                    tools=("n8n", "node"),
                    # n8n writes ~/.cache/n8n at start (n8n-io/n8n#8367, #11743): a read-only
                    # root needs it writable
                    writes=("/home/node/.cache",),
                    confirmed="https://github.com/n8n-io/n8n/blob/master/docker/images/n8n/"
                    "Dockerfile (FROM n8nio/base, USER node, WORKDIR /home/node; read at a "
                    "later revision than this tag)",
                    arm64="https://github.com/n8n-io/n8n/blob/master/docker/images/n8n/"
                    "Dockerfile (TARGETPLATFORM linux/amd64 or linux/arm64)",
                    checked="2026-12-07",
                    newest="2.41.3 (npm n8n dist-tag latest; 3.0 is an early-access release)"),
        ports=[port(6000, container=5678)],
        env={"N8N_PORT": port_of("n8n"), "N8N_EDITOR_BASE_URL": public_url("n8n"),
             "WEBHOOK_URL": public_url("n8n"), "DB_TYPE": "postgresdb",
             "DB_POSTGRESDB_HOST": host_of("postgres"),
             "DB_POSTGRESDB_PORT": port_of("postgres", "postgres"),
             "DB_POSTGRESDB_DATABASE": "n8n", "DB_POSTGRESDB_USER": "n8n",
             "DB_POSTGRESDB_PASSWORD": secret("N8N_DB_PASSWORD")},
        secrets=["N8N_ENCRYPTION_KEY"],
        database="n8n",
        volumes=[Volume(path="/home/node/.n8n", size="5Gi")],
        needs=[hard("postgres")],
        health=http("/healthz", start_period=20),
        memory="384Mi",
        availability=once("operator", "regular mode runs triggers, schedules and executions in "
                          "its one main process; several instances need queue mode with Redis "
                          "and workers, and several mains the multi-main setup of n8n's "
                          "Enterprise plan (docs.n8n.io/hosting/scaling/queue-mode/)"),
        internet="the APIs and webhooks its workflows call",
        # Production webhooks (/webhook/…) are called by Telegram, GitHub … which cannot pass
        # Access: that path alone stays open. The editor, its REST API, forms (/form, where
        # CVE-2026-21858 struck), test and waiting webhooks (/webhook-test, /webhook-waiting:
        # the tunnel's path rule matches /webhook and below only) stay behind Access.
        public=Public(host="n8n", access=True, open_paths=["/webhook"]),
        legacy=Legacy(containers=["manacore-n8n"], ports=[5678], volumes=["n8n_data"],
                      unverified=["n8n_data"]),
    ),
    service(
        id="telegram-stats-bot", category="tools", role="automation",
        description="Telegram bot with scheduled stats reports",
        image=own("telegram-stats-bot"),
        ports=[port(6010)],
        env={"PORT": port_of("telegram-stats-bot"),
             "VICTORIAMETRICS_URL": url_of("victoriametrics")},
        secrets=["TELEGRAM_STATS_BOT_TOKEN"],
        needs=[lazy("victoriametrics")],
        health=http("/health"),
        memory="96Mi",
        availability=once("background", OWN_TELEGRAM_BOT),  # scheduled reports
        internet="the Telegram Bot API",
        legacy=Legacy(containers=["manacore-telegram-stats-bot"], ports=[3300]),
    ),
    service(
        id="telegram-ollama-bot", category="tools", role="automation",
        description="Telegram bot in front of the local Ollama",
        image=own("telegram-ollama-bot"),
        ports=[port(6011)],
        env={"PORT": port_of("telegram-ollama-bot"), **OLLAMA_ENV},
        secrets=["TELEGRAM_OLLAMA_BOT_TOKEN"],
        needs=[lazy("ollama")],
        health=http("/health"),
        memory="96Mi",
        availability=once("user-facing", OWN_TELEGRAM_BOT),
        internet="the Telegram Bot API",
        # not in the seed's inventory tables: only its port 3301 in the seed's port list
        legacy=Legacy(containers=["manacore-telegram-ollama-bot"], ports=[3301],
                      unverified=["manacore-telegram-ollama-bot"]),
    ),
    service(
        id="watchtower", category="tools", role="updater", targets=["docker"],
        description="Watchtower: reports new images of the pinned tags on Telegram; Docker only."
        " Monitor-only: Pulumi owns the containers, an update is a new tag in the catalogue",
        # containrrr/watchtower is unmaintained and its 1.7.1 asks for Docker API 1.25, which
        # Engine 29 refuses (containrrr/watchtower#2124, #2126): the maintained fork negotiates
        # the API version (api-version defaults to "", autonegotiation)
        image=image("nickfedor/watchtower:1.21.0", scheme="semver", family="scratch",
                    tools=("/watchtower",),
                    confirmed="https://github.com/nicholas-fedor/watchtower/blob/v1.21.0/build/"
                    "docker/Dockerfile (FROM scratch, ENTRYPOINT /watchtower, HEALTHCHECK "
                    "--health-check) and internal/flags/docker/register.go (api-version)",
                    arm64="https://github.com/nicholas-fedor/watchtower/blob/v1.21.0/build/"
                    "goreleaser/stable.yaml (platforms … linux/arm64)",
                    checked="2026-12-07",
                    newest="1.21.0 (git tags, snapshot of 2026-08-21; the Go module proxy "
                    "refuses this module)"),
        command=["--monitor-only", "--interval", "3600"],
        # the fork sends to every WATCHTOWER_NOTIFICATION_URL (shoutrrr) without a type:
        # WATCHTOWER_NOTIFICATIONS is deprecated there (internal/flags/notify/register.go)
        secrets=["WATCHTOWER_NOTIFICATION_URL"],
        host_mounts=[HostMount(source="/var/run/docker.sock", path="/var/run/docker.sock",
                               root_equivalent="Watchtower lists containers and pulls images "
                               "through the Docker API (monitor-only)")],
        health=cmd("/watchtower", "--health-check"),
        memory="64Mi",
        availability=once("background", "it watches its host's Docker engine: a second copy "
                          "would report every new image twice"),
        internet="the image registries it watches, and Telegram for its notices",
        legacy=Legacy(containers=["manacore-watchtower"]),
    ),
]

# --- backup: restic snapshots of every stateful service (catalog/backup.py) ---------------

BACKUP = [
    service(
        id="backup", category="tools", role="backup",
        description="Scheduled restic backup of every stateful service (databases, Redis, "
        "buckets, volumes) into the stack's repository; `manacore restore` restores it",
        # images/backup/Dockerfile: restic, the PostgreSQL 17 client, redis-tools, rclone
        # root reading every volume whatever its owner and mode: DAC_READ_SEARCH, nothing else
        # (the volumes are mounted read-only; a restore runs in a container of its own)
        image=own("manacore-backup", caps=("DAC_READ_SEARCH",)),
        # what it backs up, its mounts, the repository and the servers' credentials are
        # derived from the resolved estate and the stack's `backup` settings
        env={"PUSHGATEWAY_URL": url_of("pushgateway"),
             "RESTIC_PASSWORD": secret("BACKUP_REPOSITORY_PASSWORD")},
        # staging (dumps), the mirror of the buckets, restic's cache: rebuilt when lost
        volumes=[Volume(path="/backup", size="20Gi", stateful=False)],
        needs=[lazy("pushgateway")],
        memory="512Mi",
        availability=once("background", "two runs at once would dump every database twice "
                          "and race for restic's repository lock"),
        # Docker: one container running the schedule; Kubernetes: CronJobs, the servers' one
        # and one per copied claim on the claim's node (catalog/backup.py)
        targets=["docker", "kubernetes"],
        internet="the S3 endpoint of the backup repository, off the host",
    ),
]

SECRETS = [
    Secret(name="POSTGRES_PASSWORD", description="PostgreSQL superuser password"),
    Secret(name="REDIS_PASSWORD", description="Redis requirepass"),
    Secret(name="S3_ACCESS_KEY", description="the object store's S3 access key id (the apps' "
           "and backups' key; Garage's default key)"),
    Secret(name="S3_SECRET_KEY", description="the object store's S3 secret key"),
    Secret(name="S3_RPC_SECRET", kind="hex32",
           description="Garage's RPC secret (32 bytes, hex): nodes of one cluster share it"),
    Secret(name="S3_ADMIN_TOKEN", description="bearer token of Garage's admin API"),
    Secret(name="BETTER_AUTH_SECRET", description="Better Auth signing secret (sessions, "
           "encrypted tokens in its database)", follows_data=True),
    Secret(name="SEARXNG_SECRET", description="SearXNG server secret"),
    Secret(name="SYNAPSE_REGISTRATION_SHARED_SECRET", description="Synapse admin registration"),
    Secret(name="SYNAPSE_MACAROON_SECRET_KEY", description="Synapse macaroon key (signs "
           "the tokens it hands out)", follows_data=True),
    Secret(name="SYNAPSE_SIGNING_KEY", kind="ed25519", follows_data=True,
           description="Synapse's signing key, the whole line of its signing key file (keep "
           "the legacy one: federation knows it); new: `docker run --rm --entrypoint "
           "generate_signing_key <the catalogue's synapse image>`"),
    Secret(name="GRAFANA_ADMIN_PASSWORD", description="Grafana admin password"),
    Secret(name="UMAMI_APP_SECRET", description="Umami session secret (the salt of its "
           "visitors' session ids)", follows_data=True),
    Secret(name="N8N_ENCRYPTION_KEY", description="n8n credential encryption key (its "
           "credentials are stored encrypted with it)", follows_data=True),
    Secret(name="GEMINI_API_KEY", description="Google Gemini API key (NutriPhi)",
           generate=False),
    Secret(name="MATRIX_MANA_BOT_TOKEN", description="Matrix access token of mana-bot",
           generate=False),
    Secret(name="MATRIX_STATS_BOT_TOKEN", description="Matrix access token of stats-bot",
           generate=False),
    Secret(name="MATRIX_PROJECT_DOC_BOT_TOKEN",
           description="Matrix access token of project-doc-bot", generate=False),
    Secret(name="TELEGRAM_STATS_BOT_TOKEN", description="Telegram bot token", generate=False),
    Secret(name="TELEGRAM_OLLAMA_BOT_TOKEN", description="Telegram bot token", generate=False),
    Secret(name="WATCHTOWER_NOTIFICATION_URL", description="shoutrrr URL (Telegram)",
           generate=False),
    Secret(name="BACKUP_REPOSITORY_PASSWORD", follows_data=True,
           description="restic repository password of the "
           "backups: without it no backup can be read; keep a copy off the host"),
    Secret(name="BACKUP_S3_ACCESS_KEY", description="access key of the backup bucket",
           generate=False),
    Secret(name="BACKUP_S3_SECRET_KEY", description="secret key of the backup bucket",
           generate=False),
    Secret(name="TUNNEL_TOKEN", description="Cloudflare tunnel connector token (set by the "
           "CloudflareTunnel component on Pulumi stacks; by hand for Compose)", generate=False),
]


def estate() -> Estate:
    """The whole estate as declared (not yet validated)."""
    return Estate(
        services=(*INFRA, *CORE, *NATIVE, *APP, *MATRIX, *MON, *TOOLS, *BACKUP),
        secrets=tuple(SECRETS),
        reserved_ports={4011: "former matrix-ollama-bot, kept free after the consolidation"},
    )
