#include "loads/common/curve.h"

#include <fcntl.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace loads::common {

bool IsCurveKey(const std::string& text) {
  if (text.size() != 40) return false;
  uint8_t decoded[32];
  return zmq_z85_decode(decoded, text.c_str()) != nullptr;
}

StatusOr<CurveKeys> GenerateCurveKeys() {
  char public_key[41], secret_key[41];
  if (zmq_curve_keypair(public_key, secret_key) != 0) {
    return InternalError("this libzmq has no CURVE (it needs libsodium)");
  }
  return CurveKeys{public_key, secret_key};
}

std::string FormatCurveKeyFile(const CurveKeys& keys) {
  return "# A CurveZMQ key pair of Loads (loads-controller keygen). Keep this file secret; the\n"
         "# public key may be shared.\npublic: " +
         keys.public_key + "\nsecret: " + keys.secret_key + "\n";
}

Status WriteCurveKeyFile(const std::string& path, const CurveKeys& keys) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return InternalError("cannot create " + path + ": " + std::strerror(errno));
  const std::string text = FormatCurveKeyFile(keys);
  const bool written = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  if (!written) return InternalError("cannot write " + path);
  return OkStatus();
}

StatusOr<CurveKeys> ReadCurveKeyFile(const std::string& path) {
  std::ifstream file(path);
  if (!file) return InvalidArgumentError("cannot read the key file " + path);
  CurveKeys keys;
  std::string line;
  while (std::getline(file, line)) {
    if (line.starts_with("secret: ")) keys.secret_key = line.substr(8);
    if (line.starts_with("public: ")) keys.public_key = line.substr(8);
  }
  if (!IsCurveKey(keys.secret_key)) {
    return InvalidArgumentError(path +
                                " holds no \"secret: KEY\" line with a Z85 key of 40 "
                                "characters (make one with loads-controller keygen)");
  }
  char derived[41];
  if (zmq_curve_public(derived, keys.secret_key.c_str()) != 0) {
    return InvalidArgumentError("cannot derive the public key of " + path);
  }
  if (!keys.public_key.empty() && keys.public_key != derived) {
    return InvalidArgumentError("the public key in " + path + " is not its secret key's");
  }
  keys.public_key = derived;
  return keys;
}

StatusOr<std::string> ReadCurvePublicKeyFile(const std::string& path) {
  std::ifstream file(path);
  if (!file) return InvalidArgumentError("cannot read the public key file " + path);
  std::string line, first, labelled;
  while (std::getline(file, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.starts_with("secret: ")) {
      return InvalidArgumentError(path + " holds a secret key: give the worker the public one");
    }
    if (line.starts_with("public: ")) labelled = line.substr(8);
    if (first.empty() && !line.empty()) first = line;
  }
  const std::string key = labelled.empty() ? first : labelled;
  if (!IsCurveKey(key)) {
    return InvalidArgumentError(path + " holds no Z85 public key of 40 characters");
  }
  return key;
}

}  // namespace loads::common
