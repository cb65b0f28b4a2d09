//go:build tools

// Package tools pins versitygw's command as a dependency of this wrapper module.
package tools

import _ "github.com/versity/versitygw/cmd/versitygw"
