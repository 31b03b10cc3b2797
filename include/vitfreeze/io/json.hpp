#pragma once
// A small JSON value (RFC 8259) with a strict parser and a compact/pretty writer. Used for
// safetensors headers, metrics logs and configs, so it favours exactness and clear errors over
// speed: integers that fit in int64 are kept exactly (step counters, byte offsets above 2^53),
// objects keep insertion order (headers and logs stay readable and diffable), and the parser
// rejects anything a strict reader elsewhere would reject (trailing commas, comments, duplicate
// keys, invalid UTF-8, trailing garbage), reporting the byte offset.
#include <charconv>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "vitfreeze/core/error.hpp"

namespace vitfreeze::io {

// A parse failure: `file()` is the source name given to the parser, `offset()` the byte offset
// in the text.
class JsonParseError : public FileError {
 public:
  using FileError::FileError;
};

struct JsonParseLimits {
  int max_depth = 128;  // nesting of arrays/objects; bounds the parser's recursion
};

class Json {
 public:
  enum class Kind { null, boolean, number, string, array, object };
  using Array = std::vector<Json>;
  using Object = std::vector<std::pair<std::string, Json>>;  // insertion order

  using ParseLimits = JsonParseLimits;

  Json() = default;
  Json(std::nullptr_t) {}
  Json(bool b) : value_(b) {}
  template <std::integral I>
    requires(!std::same_as<I, bool> && !std::same_as<I, char>)  // 'a' is not meant as 97
  Json(I i) {
    if constexpr (std::is_unsigned_v<I> && sizeof(I) >= sizeof(std::int64_t)) {
      if (i > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        value_ = Number{static_cast<double>(i), 0, false};
        return;
      }
    }
    value_ = Number{static_cast<double>(i), static_cast<std::int64_t>(i), true};
  }
  Json(double d) : value_(Number{d, 0, false}) {}
  Json(float f) : Json(static_cast<double>(f)) {}
  Json(const char* s) : value_(std::string(s)) {}
  Json(std::string s) : value_(std::move(s)) {}
  Json(std::string_view s) : value_(std::string(s)) {}
  Json(Array a) : value_(std::move(a)) {}
  Json(Object o) : value_(std::move(o)) {}

  static Json array() { return Json(Array{}); }
  static Json object() { return Json(Object{}); }

  Kind kind() const { return static_cast<Kind>(value_.index()); }
  bool is_null() const { return kind() == Kind::null; }
  bool is_bool() const { return kind() == Kind::boolean; }
  bool is_number() const { return kind() == Kind::number; }
  // A number that is held as an exact int64 (an integer literal, or built from an integer).
  bool is_int() const { return is_number() && std::get<Number>(value_).exact; }
  bool is_string() const { return kind() == Kind::string; }
  bool is_array() const { return kind() == Kind::array; }
  bool is_object() const { return kind() == Kind::object; }

  bool as_bool() const { return get<bool>(Kind::boolean); }
  double as_double() const { return get<Number>(Kind::number).d; }
  // The exact integer; a non-integral number (or one outside int64) is a ConfigError.
  std::int64_t as_int() const {
    const Number& n = get<Number>(Kind::number);
    if (n.exact) return n.i;
    // 2^63 is exactly representable; anything >= it does not fit.
    if (std::trunc(n.d) == n.d && n.d >= -9223372036854775808.0 && n.d < 9223372036854775808.0)
      return static_cast<std::int64_t>(n.d);
    throw ConfigError("json: expected an integer, got " + dump());
  }
  const std::string& as_string() const { return get<std::string>(Kind::string); }
  const Array& as_array() const { return get<Array>(Kind::array); }
  Array& as_array() { return get<Array>(Kind::array); }
  const Object& as_object() const { return get<Object>(Kind::object); }
  Object& as_object() { return get<Object>(Kind::object); }

  // Element count of an array or object; 0 for scalars.
  std::size_t size() const {
    if (is_array()) return as_array().size();
    if (is_object()) return as_object().size();
    return 0;
  }

  // Object member or nullptr.
  const Json* find(std::string_view key) const {
    for (const auto& [k, v] : as_object())
      if (k == key) return &v;
    return nullptr;
  }
  bool contains(std::string_view key) const { return is_object() && find(key) != nullptr; }
  // Object member; a missing key is a ConfigError naming it.
  const Json& at(std::string_view key) const {
    if (const Json* v = find(key)) return *v;
    throw ConfigError("json: missing key \"" + std::string(key) + "\"");
  }
  const Json& at(std::size_t index) const {
    const Array& a = as_array();
    if (index >= a.size())
      throw ConfigError("json: index " + std::to_string(index) + " out of " + std::to_string(a.size()));
    return a[index];
  }
  // Member access that inserts null when absent; a null value becomes an empty object first.
  Json& operator[](std::string_view key) {
    if (is_null()) value_ = Object{};
    Object& o = as_object();
    for (auto& [k, v] : o)
      if (k == key) return v;
    o.emplace_back(std::string(key), Json());
    return o.back().second;
  }
  // Sets (or replaces, keeping its position) a member; returns *this for chaining.
  Json& set(std::string_view key, Json value) {
    (*this)[key] = std::move(value);
    return *this;
  }
  // Appends to an array; a null value becomes an empty array first.
  Json& push_back(Json value) {
    if (is_null()) value_ = Array{};
    as_array().push_back(std::move(value));
    return *this;
  }

  // Deep equality; objects compare member by member in order; numbers compare exactly as
  // integers when both are exact, as doubles otherwise.
  friend bool operator==(const Json& a, const Json& b) {
    if (a.kind() != b.kind()) return false;
    if (a.is_number()) {
      const Number& x = std::get<Number>(a.value_);
      const Number& y = std::get<Number>(b.value_);
      return x.exact && y.exact ? x.i == y.i : x.d == y.d;
    }
    return a.value_ == b.value_;
  }

  // indent < 0: compact, one line. indent >= 0: pretty, `indent` spaces per level.
  // Non-finite numbers have no JSON form; they are written as null (as JavaScript does) so a
  // NaN loss in a metrics record still produces a valid line.
  std::string dump(int indent = -1) const {
    std::string out;
    write(out, indent, 0);
    return out;
  }

  static Json parse(std::string_view text, std::string_view source = "<json>", ParseLimits limits = {});

 private:
  struct Number {
    double d = 0;
    std::int64_t i = 0;
    bool exact = false;  // i holds the value exactly
    friend bool operator==(const Number&, const Number&) = default;
  };
  std::variant<std::monostate, bool, Number, std::string, Array, Object> value_;

  static constexpr const char* kind_name(Kind k) {
    constexpr const char* names[] = {"null", "bool", "number", "string", "array", "object"};
    return names[static_cast<int>(k)];
  }
  template <class T>
  const T& get(Kind want) const {
    if (kind() != want)
      throw ConfigError(std::string("json: expected ") + kind_name(want) + ", got " + kind_name(kind()));
    return std::get<T>(value_);
  }
  template <class T>
  T& get(Kind want) {
    return const_cast<T&>(std::as_const(*this).get<T>(want));
  }

  static void write_string(std::string& out, std::string_view s) {
    static constexpr char kHex[] = "0123456789abcdef";
    out += '"';
    for (char c : s) {
      const auto u = static_cast<unsigned char>(c);
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
          if (u < 0x20) {
            out += "\\u00";
            out += kHex[u >> 4];
            out += kHex[u & 15];
          } else {
            out += c;
          }
      }
    }
    out += '"';
  }

  static void write_number(std::string& out, const Number& n) {
    char buf[32];
    std::to_chars_result r;
    if (n.exact) {
      r = std::to_chars(buf, buf + sizeof buf, n.i);
    } else if (!std::isfinite(n.d)) {
      out += "null";
      return;
    } else {
      r = std::to_chars(buf, buf + sizeof buf, n.d);  // shortest form that reads back exactly
    }
    out.append(buf, r.ptr);
  }

  static void newline(std::string& out, int indent, int depth) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<std::size_t>(indent) * static_cast<std::size_t>(depth), ' ');
  }

  void write(std::string& out, int indent, int depth) const {
    switch (kind()) {
      case Kind::null: out += "null"; break;
      case Kind::boolean: out += std::get<bool>(value_) ? "true" : "false"; break;
      case Kind::number: write_number(out, std::get<Number>(value_)); break;
      case Kind::string: write_string(out, std::get<std::string>(value_)); break;
      case Kind::array: {
        const Array& a = std::get<Array>(value_);
        out += '[';
        for (std::size_t i = 0; i < a.size(); ++i) {
          if (i) out += ',';
          newline(out, indent, depth + 1);
          a[i].write(out, indent, depth + 1);
        }
        if (!a.empty()) newline(out, indent, depth);
        out += ']';
        break;
      }
      case Kind::object: {
        const Object& o = std::get<Object>(value_);
        out += '{';
        for (std::size_t i = 0; i < o.size(); ++i) {
          if (i) out += ',';
          newline(out, indent, depth + 1);
          write_string(out, o[i].first);
          out += indent < 0 ? ":" : ": ";
          o[i].second.write(out, indent, depth + 1);
        }
        if (!o.empty()) newline(out, indent, depth);
        out += '}';
        break;
      }
    }
  }

  friend class JsonParser;
};

// Recursive-descent parser over a string_view; every error names the byte offset.
class JsonParser {
 public:
  JsonParser(std::string_view text, std::string_view source, Json::ParseLimits limits)
      : text_(text), source_(source), limits_(limits) {}

  Json parse_document() {
    skip_whitespace();
    Json v = parse_value(0);
    skip_whitespace();
    if (pos_ != text_.size()) fail("end of input after the JSON value");
    return v;
  }

 private:
  std::string_view text_;
  std::string_view source_;
  Json::ParseLimits limits_;
  std::size_t pos_ = 0;

  [[noreturn]] void fail(const std::string& expected) const { fail_at(pos_, expected); }
  [[noreturn]] void fail_at(std::size_t at, const std::string& expected) const {
    std::string found;
    if (at >= text_.size()) {
      found = "end of input";
    } else {
      const auto c = static_cast<unsigned char>(text_[at]);
      if (c >= 0x20 && c < 0x7f) found = std::string("'") + static_cast<char>(c) + "'";
      else found = "byte 0x" + std::string(1, "0123456789abcdef"[c >> 4]) + "0123456789abcdef"[c & 15];
    }
    throw JsonParseError(std::string(source_), at, "json: expected " + expected + ", found " + found);
  }

  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return at_end() ? '\0' : text_[pos_]; }

  void skip_whitespace() {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) ++pos_;
  }
  void expect_literal(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) {
      std::string quoted(1, '\'');  // built piecewise: g++ 12 warns falsely (-Wrestrict) on "'" + s
      quoted.append(word).push_back('\'');
      fail(quoted);
    }
    pos_ += word.size();
  }

  Json parse_value(int depth) {
    switch (peek()) {
      case '{': return parse_object(depth + 1);
      case '[': return parse_array(depth + 1);
      case '"': return Json(parse_string());
      case 't': expect_literal("true"); return Json(true);
      case 'f': expect_literal("false"); return Json(false);
      case 'n': expect_literal("null"); return Json();
      default:
        if (peek() == '-' || (peek() >= '0' && peek() <= '9')) return parse_number();
        fail("a JSON value");
    }
  }

  void check_depth(int depth) const {
    if (depth > limits_.max_depth)
      fail("nesting depth at most " + std::to_string(limits_.max_depth));
  }

  Json parse_array(int depth) {
    check_depth(depth);
    ++pos_;  // '['
    Json::Array items;
    skip_whitespace();
    if (peek() == ']') {
      ++pos_;
      return Json(std::move(items));
    }
    for (;;) {
      skip_whitespace();
      items.push_back(parse_value(depth));
      skip_whitespace();
      if (peek() == ',') { ++pos_; continue; }
      if (peek() == ']') { ++pos_; return Json(std::move(items)); }
      fail("',' or ']'");
    }
  }

  Json parse_object(int depth) {
    check_depth(depth);
    ++pos_;  // '{'
    Json::Object members;
    std::unordered_set<std::string> seen;  // hashing keeps huge objects linear
    skip_whitespace();
    if (peek() == '}') {
      ++pos_;
      return Json(std::move(members));
    }
    for (;;) {
      skip_whitespace();
      if (peek() != '"') fail("a string key");
      const std::size_t key_at = pos_;
      std::string key = parse_string();
      if (!seen.insert(key).second) fail_at(key_at, "a unique key (" + quoted_excerpt(key) + " repeats)");
      skip_whitespace();
      if (peek() != ':') fail("':'");
      ++pos_;
      skip_whitespace();
      Json value = parse_value(depth);
      members.emplace_back(std::move(key), std::move(value));
      skip_whitespace();
      if (peek() == ',') { ++pos_; continue; }
      if (peek() == '}') { ++pos_; return Json(std::move(members)); }
      fail("',' or '}'");
    }
  }

  unsigned hex4() {
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = peek();
      unsigned d;
      if (c >= '0' && c <= '9') d = static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') d = static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') d = static_cast<unsigned>(c - 'A' + 10);
      else fail("a hex digit");
      v = v * 16 + d;
      ++pos_;
    }
    return v;
  }

  static void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xc0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xe0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }

  // One raw UTF-8 sequence starting at pos_, validated (no overlongs, surrogates or > U+10FFFF).
  void copy_utf8_sequence(std::string& out) {
    const std::size_t start = pos_;
    const auto lead = static_cast<unsigned char>(text_[pos_]);
    int extra;
    std::uint32_t cp;
    if (lead < 0x80) { out += static_cast<char>(lead); ++pos_; return; }
    if ((lead & 0xe0) == 0xc0) { extra = 1; cp = lead & 0x1f; }
    else if ((lead & 0xf0) == 0xe0) { extra = 2; cp = lead & 0x0f; }
    else if ((lead & 0xf8) == 0xf0) { extra = 3; cp = lead & 0x07; }
    else fail("valid UTF-8");
    ++pos_;
    for (int i = 0; i < extra; ++i) {
      const auto c = static_cast<unsigned char>(peek());
      if (at_end() || (c & 0xc0) != 0x80) fail("a UTF-8 continuation byte");
      cp = (cp << 6) | (c & 0x3f);
      ++pos_;
    }
    constexpr std::uint32_t min_for_length[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_for_length[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      fail_at(start, "valid UTF-8 (overlong, surrogate or out-of-range sequence)");
    out.append(text_.substr(start, pos_ - start));
  }

  std::string parse_string() {
    ++pos_;  // opening quote
    std::string out;
    for (;;) {
      if (at_end()) fail("a closing '\"'");
      const char c = peek();
      if (c == '"') { ++pos_; return out; }
      if (static_cast<unsigned char>(c) < 0x20) fail("no raw control characters in a string");
      if (c != '\\') { copy_utf8_sequence(out); continue; }
      ++pos_;
      switch (peek()) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          ++pos_;
          const std::size_t escape_at = pos_ - 2;
          std::uint32_t cp = hex4();
          if (cp >= 0xdc00 && cp <= 0xdfff) fail_at(escape_at, "a high surrogate before a low one");
          if (cp >= 0xd800 && cp <= 0xdbff) {
            if (text_.substr(pos_, 2) != "\\u") fail("a low surrogate escape after a high surrogate");
            pos_ += 2;
            const std::uint32_t low = hex4();
            if (low < 0xdc00 || low > 0xdfff) fail_at(pos_ - 6, "a low surrogate (\\udc00-\\udfff)");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
          }
          append_utf8(out, cp);
          continue;  // hex4 already advanced
        }
        default: fail("an escape character (\"\\/bfnrtu)");
      }
      ++pos_;
    }
  }

  Json parse_number() {
    const std::size_t start = pos_;
    auto digits = [&] {
      const std::size_t from = pos_;
      while (!at_end() && peek() >= '0' && peek() <= '9') ++pos_;
      return pos_ - from;
    };
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
      if (peek() >= '0' && peek() <= '9') fail("no leading zeros");
    } else if (digits() == 0) {
      fail("a digit");
    }
    bool integral = true;
    if (peek() == '.') {
      ++pos_;
      integral = false;
      if (digits() == 0) fail("a digit after '.'");
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      integral = false;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (digits() == 0) fail("a digit in the exponent");
    }
    const char* first = text_.data() + start;
    const char* last = text_.data() + pos_;
    if (integral) {
      std::int64_t i = 0;
      const auto r = std::from_chars(first, last, i);
      if (r.ec == std::errc() && r.ptr == last) return Json(i);
      // Too large for int64: fall through and keep it as a double.
    }
    double d = 0;
    const auto r = std::from_chars(first, last, d);
    if (r.ec == std::errc::result_out_of_range) {
      // Underflow rounds to zero (harmless); overflow to infinity has no JSON meaning.
      const double v = std::strtod(std::string(first, last).c_str(), nullptr);
      if (std::isinf(v)) fail_at(start, "a number within the range of a double");
      return Json(v);
    }
    if (r.ec != std::errc() || r.ptr != last) fail_at(start, "a number");
    return Json(d);
  }
};

inline Json Json::parse(std::string_view text, std::string_view source, ParseLimits limits) {
  return JsonParser(text, source, limits).parse_document();
}

}  // namespace vitfreeze::io
