#pragma once

#include <string>

#include "loads/common/status.h"

namespace loads::common {

// A CurveZMQ key pair, Z85-encoded (40 characters each).
struct CurveKeys {
  std::string public_key;
  std::string secret_key;
};

// A new key pair (libzmq's zmq_curve_keypair). INTERNAL when libzmq has no CURVE.
StatusOr<CurveKeys> GenerateCurveKeys();

// The key file of `loads-controller keygen`: "public: KEY" and "secret: KEY" lines.
std::string FormatCurveKeyFile(const CurveKeys& keys);

// Writes the key file of `keys` to a new file `path`, readable by its owner only (0600); an
// existing file is never overwritten. INTERNAL naming the path and why.
Status WriteCurveKeyFile(const std::string& path, const CurveKeys& keys);

// Reads a key file: its secret key, and the public key derived from it (a "public:" line, if
// any, must match). INVALID_ARGUMENT naming the file; the key itself is never in a message.
StatusOr<CurveKeys> ReadCurveKeyFile(const std::string& path);

// Reads a public key from a file holding it alone on its first line, or on a "public: KEY" line
// (a key file of `keygen`, a key Kubernetes mounts from a Secret). INVALID_ARGUMENT naming the
// file.
StatusOr<std::string> ReadCurvePublicKeyFile(const std::string& path);

// Whether text is a Z85-encoded 32-byte key.
bool IsCurveKey(const std::string& text);

}  // namespace loads::common
