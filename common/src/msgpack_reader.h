#pragma once

// Reading msgpack objects with validation, for the decoders of the wire protocol. Private to
// common/.

#include <msgpack.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "loads/common/histogram.h"
#include "loads/common/protocol.h"
#include "loads/common/snapshot.h"

namespace loads::common {

// Decoding: each helper returns false and fills *error on a mismatch.
class Reader {
 public:
  explicit Reader(std::string* error) : error_(error) {}

  bool Fail(std::string_view field, std::string_view what) {
    if (error_) *error_ = "field '" + std::string(field) + "': " + std::string(what);
    return false;
  }
  bool Uint(const msgpack::object& o, std::string_view field, uint64_t* out) {
    if (o.type != msgpack::type::POSITIVE_INTEGER) {
      return Fail(field, "expected a non-negative integer");
    }
    *out = o.via.u64;
    return true;
  }
  bool Int(const msgpack::object& o, std::string_view field, int64_t* out) {
    if (o.type == msgpack::type::NEGATIVE_INTEGER) {
      *out = o.via.i64;
      return true;
    }
    if (o.type == msgpack::type::POSITIVE_INTEGER && o.via.u64 <= INT64_MAX) {
      *out = static_cast<int64_t>(o.via.u64);
      return true;
    }
    return Fail(field, "expected a 64-bit integer");
  }
  bool String(const msgpack::object& o, std::string_view field, std::string* out) {
    if (o.type != msgpack::type::STR) return Fail(field, "expected a string");
    out->assign(o.via.str.ptr, o.via.str.size);
    return true;
  }
  bool Array(const msgpack::object& o, std::string_view field, size_t size) {
    if (o.type != msgpack::type::ARRAY) return Fail(field, "expected an array");
    if (size != SIZE_MAX && o.via.array.size != size) {
      return Fail(field, "expected " + std::to_string(size) + " elements");
    }
    return true;
  }
  bool Map(const msgpack::object& o, std::string_view field, size_t max_entries) {
    if (o.type != msgpack::type::MAP) return Fail(field, "expected a map");
    if (o.via.map.size > max_entries) {
      return Fail(field, "more than " + std::to_string(max_entries) + " entries");
    }
    return true;
  }
  bool Histo(const msgpack::object& o, std::string_view field, Histogram* out) {
    if (!Array(o, field, 5)) return false;
    const msgpack::object* a = o.via.array.ptr;
    uint64_t count = 0, min = 0, max = 0, sum = 0;
    if (!Uint(a[0], field, &count) || !Uint(a[1], field, &min) || !Uint(a[2], field, &max) ||
        !Uint(a[3], field, &sum) || !Array(a[4], field, SIZE_MAX)) {
      return false;
    }
    const auto& flat = a[4].via.array;
    if (flat.size % 2 != 0) return Fail(field, "bucket list has an odd length");
    std::vector<std::pair<uint64_t, uint64_t>> buckets;
    buckets.reserve(flat.size / 2);
    uint64_t index = 0;
    for (size_t k = 0; k < flat.size; k += 2) {
      uint64_t delta = 0, n = 0;
      if (!Uint(flat.ptr[k], field, &delta) || !Uint(flat.ptr[k + 1], field, &n)) return false;
      if (delta > Histogram::IndexedBucketCount()) return Fail(field, "bucket index out of range");
      index += delta;
      buckets.emplace_back(index, n);
    }
    if (!Histogram::FromParts(count, min, max, sum, buckets, out)) {
      return Fail(field, "inconsistent histogram (indexes, counts, min or max)");
    }
    return true;
  }

 private:
  std::string* error_;
};

// Unpacks one msgpack document that must fill `bytes` exactly, within bounds that keep a hostile
// frame from allocating much. Returns false and fills *error on failure; never throws.
bool UnpackBounded(std::string_view bytes, msgpack::object_handle* handle, std::string* error);

// Reads an unpacked protocol message: a map with string keys whose "v" must be between `oldest`
// and `version`. Calls field(key, value) for every other key; field returns false (having filled
// the error) to stop. Returns false on any problem.
// The version read goes to *read_version when given.
template <typename Field>
bool ReadMessage(const msgpack::object& root, uint64_t version, std::string* error, Field&& field,
                 uint64_t oldest = 0, uint64_t* read_version = nullptr) {
  if (oldest == 0) oldest = version;
  Reader r(error);
  if (!r.Map(root, "(message)", 64)) return false;
  bool seen_version = false;
  for (uint32_t i = 0; i < root.via.map.size; ++i) {
    const auto& kv = root.via.map.ptr[i];
    std::string key;
    if (!r.String(kv.key, "(key)", &key)) return false;
    if (key == "v") {
      uint64_t v = 0;
      if (!r.Uint(kv.val, key, &v)) return false;
      if (v < oldest || v > version) {
        return r.Fail(key, "unsupported version " + std::to_string(v));
      }
      seen_version = true;
      if (read_version) *read_version = v;
    } else if (!field(key, kv.val)) {
      return false;
    }
  }
  if (!seen_version) return r.Fail("v", "missing");
  return true;
}

// The decoders of each kind of message on an already unpacked root, so that a receiver of both
// kinds unpacks a frame once (DecodeMessage).
bool DecodeSnapshotObject(const msgpack::object& root, Snapshot* out, std::string* error);
bool DecodeControlObject(const msgpack::object& root, ControlMessage* out, std::string* error);

// Packs a str (never bin) of any std::string_view.
inline void PackString(msgpack::packer<msgpack::sbuffer>& pk, std::string_view s) {
  pk.pack_str(static_cast<uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

}  // namespace loads::common
