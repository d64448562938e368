//go:build kms_azure

package keys

// Registers sigstore's azure KMS provider; built only with -tags kms_azure
// because the provider pulls in its cloud SDK.
import _ "github.com/sigstore/sigstore/pkg/signature/kms/azure"
