#pragma once
// Command-line flags of the example executables, on CLI11 (unknown flags, missing values, a flag
// given twice, `--flag=value`, help text), with the numbers parsed here: strictly (an integer flag
// takes decimal digits only, so 2.7, 1e3, 0x10 and " 3" are refused; NaN and infinities never pass)
// and checked against the flag's range. Every failure is a ConfigError that names the flag. Both
// executables parse through this, so they agree on the syntax: `--flag value` or `--flag=value`,
// and a boolean is `--flag` alone (or `--flag=true|false`).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "vitfreeze/core/error.hpp"

namespace vitfreeze::examples {

namespace detail {
template <class T>
std::string number_text(T v) {
  if constexpr (std::is_floating_point_v<T>) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", double(v));
    return buf;
  } else {
    return std::to_string(v);
  }
}
}  // namespace detail

// `text` as a T in [lo, hi]; a ConfigError naming `flag` otherwise.
template <class T>
T parse_number(std::string_view flag, std::string_view text, T lo, T hi) {
  T v{};
  const char* first = text.data();
  const char* last = first + text.size();
  std::from_chars_result r{};
  if constexpr (std::is_floating_point_v<T>) r = std::from_chars(first, last, v, std::chars_format::general);
  else r = std::from_chars(first, last, v);
  const bool parsed = !text.empty() && r.ec == std::errc() && r.ptr == last;
  if (!parsed || !(v >= lo && v <= hi))  // NaN fails both comparisons
    throw ConfigError(std::string(flag) + ": expected " + (std::is_floating_point_v<T> ? "a number" : "an integer") +
                      " in [" + detail::number_text(lo) + ", " + detail::number_text(hi) + "], got " +
                      quoted_excerpt(text));
  return v;
}

// One executable's flags. Options bind to the caller's variables, which keep their defaults when a
// flag is not given.
class FlagSet {
 public:
  explicit FlagSet(std::string description) : app_(std::move(description)) {
    app_.set_help_flag("-h,--help", "this text");
    app_.get_formatter()->column_width(34);
  }

  // A number in [lo, hi] into `target` (a T, or a std::optional<T> that stays empty when not given).
  template <class T, class Target>
  void number(const std::string& name, Target& target, T lo, T hi, const std::string& help) {
    add(name, [&target, name, lo, hi](const std::string& text) { target = parse_number(name, text, lo, hi); },
        help, std::is_floating_point_v<T> ? "X" : "N");
  }
  // One of `choices` (into a string or a std::optional<std::string>).
  template <class Target>
  void choice(const std::string& name, Target& target, const std::vector<std::string>& choices, const std::string& help) {
    std::string names;
    for (const auto& c : choices) names += (names.empty() ? "" : "|") + c;
    add(name, [&target, name, choices, names](const std::string& text) {
      if (std::find(choices.begin(), choices.end(), text) == choices.end())
        throw ConfigError(name + ": expected one of " + names + ", got " + quoted_excerpt(text));
      target = text;
    }, help, names);
  }
  // Free text, a path by default (into a string or a std::optional<std::string>); never empty.
  template <class Target>
  void text(const std::string& name, Target& target, const std::string& help, const std::string& type = "PATH") {
    add(name, [&target, name](const std::string& text) {
      if (text.empty()) throw ConfigError(name + ": expected a value, got an empty one");
      target = text;
    }, help, type);
  }
  void flag(const std::string& name, bool& target, const std::string& help) {
    app_.add_flag(name, target, help)->group(group_);
  }
  // The heading the options added next are listed under in the help text.
  void group(std::string heading) { group_ = std::move(heading); }

  // Parses the command line. Returns false when --help was asked for (help() has the text); throws
  // ConfigError on anything it cannot accept.
  bool parse(int argc, const char* const* argv) {
    try {
      app_.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
      return false;
    } catch (const CLI::ParseError& e) {
      throw ConfigError(e.what());
    }
    return true;
  }
  std::string help() const { return app_.help(); }
  bool given(const std::string& name) const { return app_.count(name) > 0; }

 private:
  void add(const std::string& name, std::function<void(const std::string&)> set, const std::string& help,
           const std::string& type) {
    app_.add_option_function<std::string>(name, std::move(set), help)->type_name(type)->group(group_);
  }

  CLI::App app_;
  std::string group_ = "Options";
};

}  // namespace vitfreeze::examples
