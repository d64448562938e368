//go:build kms_gcp

package keys

// Registers sigstore's gcp KMS provider; built only with -tags kms_gcp
// because the provider pulls in its cloud SDK.
import _ "github.com/sigstore/sigstore/pkg/signature/kms/gcp"
