// Fuzz target: the strict JSON parser (io/json.hpp). Beyond "no crash", every document it accepts
// must survive a round trip: dump (compact and pretty) and parse again gives an equal value, since
// metrics logs and safetensors headers are written by dump and read back by parse.
#include <cstdlib>
#include <string_view>

#include "fuzz_common.hpp"
#include "vitfreeze/io/json.hpp"

namespace {
using vitfreeze::io::Json;

// Touches every accessor a consumer might call on untrusted values.
void walk(const Json& j) {
  if (j.is_number()) {
    (void)j.as_double();
    try {
      (void)j.as_int();
    } catch (const vitfreeze::Error&) {
    }
  } else if (j.is_array()) {
    for (const Json& e : j.as_array()) walk(e);
  } else if (j.is_object()) {
    for (const auto& [k, v] : j.as_object()) {
      if (j.find(k) != &v) std::abort();  // keys are unique, so find must return this member
      walk(v);
    }
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  Json j;
  try {
    j = Json::parse(text, "fuzz");
  } catch (const vitfreeze::Error&) {
    return 0;
  }
  walk(j);
  for (int indent : {-1, 2}) {
    const std::string out = j.dump(indent);
    const Json back = vitfreeze::fuzz::must_succeed("re-parsing dump()", [&] { return Json::parse(out, "fuzz-roundtrip"); });
    if (!(back == j)) std::abort();
  }
  return 0;
}
