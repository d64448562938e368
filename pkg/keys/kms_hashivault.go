//go:build kms_hashivault

package keys

// Registers sigstore's hashivault KMS provider; built only with -tags kms_hashivault
// because the provider pulls in its cloud SDK.
import _ "github.com/sigstore/sigstore/pkg/signature/kms/hashivault"
