package keys

import (
	"context"
	"crypto"
	"fmt"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/kms"
)

// kmsProviders maps a KMS URI scheme to the build tag that compiles its
// sigstore provider into the binary. Each provider pulls in a large cloud
// SDK, so none is in the default build.
var kmsProviders = map[string]string{
	"awskms://":     "kms_aws",
	"gcpkms://":     "kms_gcp",
	"hashivault://": "kms_hashivault",
	"azurekms://":   "kms_azure",
}

func kmsScheme(ref string) (string, bool) {
	for scheme := range kmsProviders {
		if strings.HasPrefix(ref, scheme) {
			return scheme, true
		}
	}
	return "", false
}

func loadKMS(ctx context.Context, scheme, ref string) (signature.SignerVerifier, error) {
	if !kmsCompiled(scheme) {
		return nil, fmt.Errorf("keys: this vigil binary has no %s support: rebuild with `go build -tags %s` (see docs/KEYS.md)", strings.TrimSuffix(scheme, "://"), kmsProviders[scheme])
	}
	sv, err := kms.Get(ctx, ref, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("keys: open KMS key %s: %w", ref, err)
	}
	return sv, nil
}

// kmsCompiled reports whether a provider registered itself for scheme; the
// provider packages register in their init functions when their build tag
// includes them.
func kmsCompiled(scheme string) bool {
	for _, s := range kms.SupportedProviders() {
		if s == scheme {
			return true
		}
	}
	return false
}
