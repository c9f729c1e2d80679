#include "tools/fpsim/profiles_cmd.h"

#include "model/profile.h"
#include "tools/exit_codes.h"
#include "tools/fpsim/cli_util.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace fpsim::tools {
namespace {

using model::FeatureInfo;
using model::KernelProfile;

nlohmann::json feature_json(const FeatureInfo &f) {
  return {{"name", f.name}, {"behaviour", f.behaviour}, {"origin", f.origin},
          {"evidence", f.evidence}, {"in_traces", f.in_traces}};
}

std::vector<std::string> feature_names(const KernelProfile &p) {
  std::vector<std::string> out;
  for (const FeatureInfo &f : model::all_features())
    if (p.has(f.feature))
      out.emplace_back(f.name);
  return out;
}

void print_table() {
  const auto &bases = model::all_base_profiles();
  std::size_t width = 0;
  for (const FeatureInfo &f : model::all_features())
    width = std::max(width, f.name.size());
  fmt::print("{:<{}}", "feature", width);
  for (const auto &b : bases)
    fmt::print("  {}", b.name);
  fmt::print("\n");
  for (const FeatureInfo &f : model::all_features()) {
    fmt::print("{:<{}}", f.name, width);
    for (const auto &b : bases)
      fmt::print("  {:>{}}", b.features.has(f.feature) ? "yes" : "-", b.name.size());
    fmt::print("{}\n", f.in_traces ? "" : "  *");
  }
  fmt::print("* no trace outcome depends on it\n\nprofiles:\n");
  for (const auto &b : bases)
    fmt::print("  {:<8} {} (protocol 7.{})\n", b.name, b.what, b.protocol_minor);
  fmt::print("\nfeatures:\n");
  for (const FeatureInfo &f : model::all_features())
    fmt::print("  {}: {}\n    from {}; evidence: {}\n", f.name, f.behaviour, f.origin, f.evidence);
  fmt::print("\ncompose a profile with +FEATURE and -FEATURE: --kernel 6.18+{}\n",
             model::feature_info(model::Feature::BackingComparedByInode).name);
}

nlohmann::json table_json() {
  nlohmann::json j;
  j["features"] = nlohmann::json::array();
  for (const FeatureInfo &f : model::all_features())
    j["features"].push_back(feature_json(f));
  j["profiles"] = nlohmann::json::array();
  for (const auto &b : model::all_base_profiles())
    j["profiles"].push_back({{"name", b.name},
                             {"what", b.what},
                             {"protocol_minor", b.protocol_minor},
                             {"features", feature_names(KernelProfile{b.base, b.features})}});
  return j;
}

int run_diff(const ProfilesArgs &args) {
  const auto a = profile_arg("fpsim profiles", args.diff[0], stderr);
  const auto b = profile_arg("fpsim profiles", args.diff[1], stderr);
  if (!a || !b)
    return kExitUsage;
  nlohmann::json only_a = nlohmann::json::array();
  nlohmann::json only_b = nlohmann::json::array();
  for (const FeatureInfo &f : model::all_features()) {
    if (a->has(f.feature) && !b->has(f.feature))
      only_a.push_back(feature_json(f));
    if (b->has(f.feature) && !a->has(f.feature))
      only_b.push_back(feature_json(f));
  }
  const std::string an = model::profile_name(*a);
  const std::string bn = model::profile_name(*b);
  if (args.json) {
    fmt::print("{}\n", nlohmann::json{{"a", an}, {"b", bn}, {"only_in_a", only_a},
                                      {"only_in_b", only_b}}
                           .dump(2));
    return kExitOk;
  }
  if (only_a.empty() && only_b.empty())
    fmt::print("{} and {} have the same features\n", an, bn);
  for (const auto &f : only_a)
    fmt::print("- {:<36} only in {}: {}\n", f["name"].get<std::string>(), an,
               f["behaviour"].get<std::string>());
  for (const auto &f : only_b)
    fmt::print("+ {:<36} only in {}: {}\n", f["name"].get<std::string>(), bn,
               f["behaviour"].get<std::string>());
  return kExitOk;
}

} // namespace

CLI::App *add_profiles_command(CLI::App &app, ProfilesArgs &args) {
  CLI::App *cmd = app.add_subcommand(
      "profiles", "the kernel profiles and the named features that make each one");
  cmd->add_flag("--json", args.json, "print as JSON");
  cmd->add_option("--diff", args.diff, "two profiles: the features that differ between them")
      ->expected(2);
  return cmd;
}

int run_profiles(const ProfilesArgs &args) {
  if (!args.diff.empty())
    return run_diff(args);
  if (args.json)
    fmt::print("{}\n", table_json().dump(2));
  else
    print_table();
  return kExitOk;
}

} // namespace fpsim::tools
