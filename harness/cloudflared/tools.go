//go:build tools

// Package tools pins cloudflared's command as a dependency of this wrapper module.
package tools

import _ "github.com/cloudflare/cloudflared/cmd/cloudflared"
