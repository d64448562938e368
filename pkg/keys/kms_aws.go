//go:build kms_aws

package keys

// Registers sigstore's aws KMS provider; built only with -tags kms_aws
// because the provider pulls in its cloud SDK.
import _ "github.com/sigstore/sigstore/pkg/signature/kms/aws"
