// pulumi-resource-kubernetes: the upstream provider's main package (cmd/pulumi-resource-kubernetes)
// with the two files it embeds, which upstream generates at build time (`go generate`: the schema
// with its version set, and the Terraform mapping, both re-serialized) and so are not in the
// module; harness/toolchain.sh writes them next to this file before `go build`.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var pulumiSchema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, pulumiSchema, terraformMapping)
}
