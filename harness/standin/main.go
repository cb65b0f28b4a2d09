// Command standin plays any image the suite cannot build for real (our own apps, and third-party
// images Debian does not package) so that a real Docker engine can run the whole estate and
// prove its wiring: it listens on every port the service's health check and PORT use, and it
// reports healthy only after it has logged in to every PostgreSQL and Redis the environment
// names (with the credentials given) and reached every internal HTTP URL in it. A wrong host,
// port, database, user or password keeps the container unhealthy, with the reason in its log
// and in `standin report`.
//
// Modes, by the name it is called as (the image links the health check's binary to it):
//
//	standin [args…]          serve (args, the image's usual command, are logged and ignored)
//	standin report           print the wiring report of the running stand-in as JSON
//	<anything else> [args…]  a health probe: exit 0 when the running stand-in is healthy
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"
)

// configPath holds what the image build knew: the service and the ports to listen on.
const configPath = "/etc/standin.json"

type config struct {
	Service string `json:"service"`
	Listen  []int  `json:"listen"`
	// its hard dependencies: their container names and their service ids (= Kubernetes names)
	HardHosts []string `json:"hard_hosts"`
	// its own names (container name, service id): a URL of its own (a public base URL such as
	// SearXNG's) is what it serves, not a dependency, and on Kubernetes its own NetworkPolicy
	// does not let it call itself through its Service
	Self []string `json:"self"`
}

// check is one dependency the environment names.
type check struct {
	Kind   string `json:"kind"`   // postgres, redis, http
	Source string `json:"source"` // the env variable(s) or file it comes from
	Target string `json:"target"` // the address, with the password masked
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	// Required checks gate health: every database and cache, and the HTTP URLs of hard
	// dependencies. Lazy ones are verified too but may come up later (their services retry).
	Required bool `json:"required"`
	url      string
	pass     string
}

type state struct {
	mu      sync.Mutex
	Service string   `json:"service"`
	Healthy bool     `json:"healthy"`
	Listen  []int    `json:"listen"`
	Checks  []*check `json:"checks"`
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("standin: ")
	cfg := loadConfig()
	name := filepath.Base(os.Args[0])
	switch {
	case name != "standin":
		os.Exit(probe())
	case len(os.Args) > 1 && os.Args[1] == "report":
		os.Exit(report())
	}
	serve(cfg)
}

func loadConfig() config {
	var cfg config
	if raw, err := os.ReadFile(configPath); err == nil {
		if err := json.Unmarshal(raw, &cfg); err != nil {
			log.Fatalf("%s: %v", configPath, err)
		}
	}
	if p, err := strconv.Atoi(os.Getenv("PORT")); err == nil && p > 0 {
		cfg.Listen = append(cfg.Listen, p)
	}
	sort.Ints(cfg.Listen)
	uniq := cfg.Listen[:0]
	for i, p := range cfg.Listen {
		if i == 0 || p != cfg.Listen[i-1] {
			uniq = append(uniq, p)
		}
	}
	cfg.Listen = uniq
	return cfg
}

// statusSocket is where probe and report ask the running stand-in: an abstract unix socket,
// so it works without ports and on a read-only root filesystem.
const statusSocket = "@manacore-standin"

func statusClient() *http.Client {
	return &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", statusSocket)
		}}}
}

func probe() int {
	resp, err := statusClient().Get("http://standin/")
	if err != nil {
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}

func report() int {
	resp, err := statusClient().Get("http://standin/__standin/report")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	var v any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	out, _ := json.MarshalIndent(v, "", "  ")
	fmt.Println(string(out))
	return 0
}

func serve(cfg config) {
	st := &state{Service: cfg.Service, Listen: cfg.Listen, Checks: checksFromEnv(cfg.HardHosts, cfg.Self)}
	if len(os.Args) > 1 {
		log.Printf("%s: ignoring the image's command %q", cfg.Service, os.Args[1:])
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/__standin/report", func(w http.ResponseWriter, _ *http.Request) {
		st.mu.Lock()
		defer st.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
	// Exporters' health checks read their own metrics (postgres-exporter: `pg_up 1`): answer
	// with what the checks found, as the exporter reports whether it reached its target.
	metrics := func(w http.ResponseWriter) {
		st.mu.Lock()
		defer st.mu.Unlock()
		up := map[string]int{}
		for _, c := range st.Checks {
			name := map[string]string{"postgres": "pg_up", "redis": "redis_up"}[c.Kind]
			if name == "" {
				continue
			}
			if _, seen := up[name]; !seen {
				up[name] = 1
			}
			if !c.OK {
				up[name] = 0
			}
		}
		fmt.Fprintf(w, "# %s stand-in\n", cfg.Service)
		for _, name := range []string{"pg_up", "redis_up"} {
			if v, ok := up[name]; ok {
				fmt.Fprintf(w, "%s %d\n", name, v)
			}
		}
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/metrics") { // /metrics, /_synapse/metrics …
			metrics(w)
			return
		}
		st.mu.Lock()
		healthy := st.Healthy
		st.mu.Unlock()
		if !healthy {
			http.Error(w, "wiring not verified yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "%s stand-in: ok\n", cfg.Service)
	})
	if ln, err := net.Listen("unix", statusSocket); err == nil {
		go func() { log.Fatal(http.Serve(ln, mux)) }()
	} else {
		log.Fatalf("listen %s: %v", statusSocket, err)
	}
	for _, p := range cfg.Listen {
		ln, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
		if err != nil {
			log.Fatalf("listen :%d: %v", p, err)
		}
		go func() { log.Fatal(http.Serve(ln, mux)) }()
	}
	log.Printf("%s: listening on %v, %d dependencies to verify", cfg.Service, cfg.Listen, len(st.Checks))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go verify(ctx, st)
	<-ctx.Done()
	log.Printf("%s: stopping", cfg.Service)
}

// verify runs every check until all pass once; the stand-in is healthy from the moment every
// required one passed.
func verify(ctx context.Context, st *state) {
	for attempt := 1; ; attempt++ {
		all, required := true, true
		for _, c := range st.Checks {
			if c.OK {
				continue
			}
			err := run(ctx, c)
			st.mu.Lock()
			c.OK, c.Detail = err == nil, "ok"
			if err != nil {
				c.Detail = err.Error()
				all = false
				required = required && !c.Required
			}
			st.mu.Unlock()
			if err != nil && attempt%10 == 1 {
				log.Printf("%s %s (%s): %v", c.Kind, c.Target, c.Source, err)
			}
		}
		st.mu.Lock()
		if required && !st.Healthy {
			st.Healthy = true
			log.Printf("required dependencies verified: healthy")
		}
		st.mu.Unlock()
		if all {
			log.Printf("all %d dependencies verified", len(st.Checks))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func run(ctx context.Context, c *check) error {
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	switch c.Kind {
	case "postgres":
		conn, err := pgx.Connect(ctx, c.url)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		var user, db string
		if err := conn.QueryRow(ctx, "select current_user, current_database()").Scan(&user, &db); err != nil {
			return err
		}
		c.Target = fmt.Sprintf("%s as %s on %s", c.Target, user, db)
		return nil
	case "redis":
		opt, err := redis.ParseURL(c.url)
		if err != nil {
			return err
		}
		if c.pass != "" {
			opt.Password = c.pass
		}
		client := redis.NewClient(opt)
		defer client.Close()
		return client.Ping(ctx).Err()
	case "http":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil // any answer: the address is right (a dependency may still be starting)
	}
	return fmt.Errorf("unknown check %q", c.Kind)
}

var urlPattern = regexp.MustCompile(`^(postgres|postgresql|redis|rediss|http|https)://`)

// internal: a container name (no dot) or a cluster-local name; public hostnames and the
// native services on the Mac Mini (host.docker.internal) are not part of the estate here.
func internal(host string) bool {
	return !strings.Contains(host, ".") || strings.HasSuffix(host, ".svc.cluster.local")
}

func mask(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

func newCheck(kind, source, raw, pass string) *check {
	return &check{Kind: kind, Source: source, Target: mask(raw), url: raw, pass: pass,
		Required: kind != "http"}
}

// checksFromEnv finds every dependency the environment (and a Synapse config) names.
func checksFromEnv(hardHosts, self []string) []*check {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	checks := []*check{}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := env[k]
		m := urlPattern.FindStringSubmatch(v)
		if m == nil || k == "DATA_SOURCE_URI" || k == "REDIS_ADDR" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil {
			checks = append(checks, &check{Kind: "url", Source: k, Target: "(unparseable URL)",
				Detail: err.Error()})
			continue
		}
		switch m[1] {
		case "postgres", "postgresql":
			checks = append(checks, newCheck("postgres", k, v, ""))
		case "redis", "rediss":
			checks = append(checks, newCheck("redis", k, v, ""))
		default:
			// a container name (Docker), or a Service's cluster DNS name (Kubernetes)
			service, _, _ := strings.Cut(u.Hostname(), ".")
			if slices.Contains(self, u.Hostname()) || slices.Contains(self, service) {
				continue
			}
			if internal(u.Hostname()) {
				c := newCheck("http", k, v, "")
				c.Required = slices.Contains(hardHosts, u.Hostname()) ||
					strings.HasSuffix(u.Hostname(), ".svc.cluster.local") &&
						slices.Contains(hardHosts, service)
				checks = append(checks, c)
			}
		}
	}
	// Software that takes its database as separate settings: build the URL it builds.
	// n8n: DB_POSTGRESDB_* (packages/cli/src/config/schema.ts in n8n 1.x)
	if env["DB_TYPE"] == "postgresdb" {
		u := url.URL{Scheme: "postgresql", Host: net.JoinHostPort(env["DB_POSTGRESDB_HOST"],
			orDefault(env["DB_POSTGRESDB_PORT"], "5432")), Path: "/" + env["DB_POSTGRESDB_DATABASE"],
			User: url.UserPassword(env["DB_POSTGRESDB_USER"], env["DB_POSTGRESDB_PASSWORD"])}
		checks = append(checks, newCheck("postgres", "DB_POSTGRESDB_*", u.String(), ""))
	}
	// postgres_exporter: "postgresql://" + user:pass@ + DATA_SOURCE_URI (cmd/postgres_exporter/
	// datasource.go), so the URI carries no scheme of its own.
	if uri, ok := env["DATA_SOURCE_URI"]; ok {
		raw := "postgresql://" + url.UserPassword(env["DATA_SOURCE_USER"], env["DATA_SOURCE_PASS"]).String() + "@" + uri
		checks = append(checks, newCheck("postgres", "DATA_SOURCE_URI+USER+PASS", raw, ""))
	}
	// redis_exporter: REDIS_ADDR with the password in REDIS_PASSWORD
	if addr, ok := env["REDIS_ADDR"]; ok {
		if !strings.Contains(addr, "://") {
			addr = "redis://" + addr
		}
		checks = append(checks, newCheck("redis", "REDIS_ADDR+REDIS_PASSWORD", addr, env["REDIS_PASSWORD"]))
	}
	// Synapse: database.args in its homeserver.yaml
	if path := env["SYNAPSE_CONFIG_PATH"]; path != "" {
		if c := synapseCheck(path); c != nil {
			checks = append(checks, c)
		}
	}
	return checks
}

func synapseCheck(path string) *check {
	raw, err := os.ReadFile(path)
	if err != nil {
		return &check{Kind: "postgres", Source: path, Target: path, Detail: err.Error()}
	}
	var hs struct {
		Database struct {
			Name string         `yaml:"name"`
			Args map[string]any `yaml:"args"`
		} `yaml:"database"`
	}
	if err := yaml.Unmarshal(raw, &hs); err != nil {
		return &check{Kind: "postgres", Source: path, Target: path, Detail: err.Error()}
	}
	if hs.Database.Name != "psycopg2" {
		return nil
	}
	arg := func(k string) string {
		if v, ok := hs.Database.Args[k]; ok {
			return fmt.Sprint(v)
		}
		return ""
	}
	u := url.URL{Scheme: "postgresql", Host: net.JoinHostPort(arg("host"), orDefault(arg("port"), "5432")),
		Path: "/" + arg("database"), User: url.UserPassword(arg("user"), arg("password"))}
	return newCheck("postgres", path+" database.args", u.String(), "")
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}
