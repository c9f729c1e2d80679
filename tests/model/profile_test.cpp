// Profiles as feature sets: names round-trip, composition, and the model gating on features.
#include "model/fuse.h"
#include "model/profile.h"
#include "sim/trace/parser.h"
#include "tests/traces.h"

#include <cerrno>
#include <gtest/gtest.h>
#include <variant>

namespace fpsim::model {
namespace {

TEST(Profile, BuiltinNamesRoundTrip) {
  for (const KernelProfile &p : kBuiltinProfiles) {
    const auto back = parse_profile(profile_name(p));
    ASSERT_TRUE(back) << profile_name(p);
    EXPECT_EQ(*back, p);
  }
  EXPECT_EQ(profile_name(KernelProfile::V15), "v15");
  EXPECT_EQ(profile_name(KernelProfile::V6_9), "6.9");
  EXPECT_EQ(profile_name(KernelProfile::V6_18), "6.18");
  EXPECT_EQ(profile_name(KernelProfile::V6_12_117), "6.12.117");
  EXPECT_EQ(profile_name(KernelProfile::V7_3), "7.3");
}

// The backports Debian's 6.12.117 carries over 6.12.0, and what 6.18 changed after them.
TEST(Profile, StableBackportsAreFeatures) {
  const auto differ = [](const KernelProfile &a, const KernelProfile &b) {
    std::vector<std::string_view> out;
    for (const FeatureInfo &f : all_features())
      if (a.has(f.feature) != b.has(f.feature))
        out.push_back(f.name);
    return out;
  };
  using V = std::vector<std::string_view>;
  EXPECT_EQ(differ(KernelProfile::V6_12_0, KernelProfile::V6_12_117),
            (V{"backing_rejects_non_regular", "no_open_keeps_args", "fuseblk_release_async"}));
  EXPECT_EQ(differ(KernelProfile::V6_12_117, KernelProfile::V6_18),
            (V{"flush_takes_inode_lock", "sync_init", "direct_read_waits_for_locked_folio"}));
  EXPECT_EQ(differ(KernelProfile::V6_18, KernelProfile::V7_2), (V{"buffered_read_error_eio"}));
  EXPECT_EQ(differ(KernelProfile::V7_2, KernelProfile::V7_3),
            (V{"fopen_bit8_io_uring_zero_copy"}));
}

TEST(Profile, ComposedAddsAndRemovesFeatures) {
  const auto p = parse_profile("6.18+backing_compared_by_inode-no_open_keeps_args");
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->has(Feature::BackingComparedByInode));
  EXPECT_FALSE(p->has(Feature::NoOpenKeepsArgs));
  EXPECT_TRUE(p->has(Feature::BackingAcceptsOPath));
  EXPECT_NE(*p, KernelProfile::V6_18);
  // Printed in feature order, whatever order it was written in.
  EXPECT_EQ(profile_name(*p), "6.18-no_open_keeps_args+backing_compared_by_inode");
  EXPECT_EQ(parse_profile(profile_name(*p)), p);
  // Adding a feature the base has, or removing one it lacks, changes nothing.
  EXPECT_EQ(parse_profile("6.18+no_open_keeps_args"), KernelProfile::V6_18);
  EXPECT_EQ(parse_profile("6.9-no_open_keeps_args"), KernelProfile::V6_9);
}

TEST(Profile, UnknownNamesSayWhich) {
  std::string why;
  EXPECT_FALSE(parse_profile("7.0", &why));
  EXPECT_TRUE(fpsim::test::contains(why, "unknown kernel profile '7.0'"));
  EXPECT_TRUE(fpsim::test::contains(why, "v15, 6.9, 6.12.0, 6.12.117, 6.18, 7.2 or 7.3"));
  EXPECT_FALSE(parse_profile("6.18+nope", &why));
  EXPECT_TRUE(fpsim::test::contains(why, "unknown kernel feature 'nope'"));
  EXPECT_FALSE(parse_profile("6.18+", &why));
  EXPECT_TRUE(fpsim::test::contains(why, "unknown kernel feature ''"));
  EXPECT_FALSE(parse_profile("", &why));
}

TEST(Profile, EveryFeatureHasAUniqueNameAndItsEvidence) {
  for (const FeatureInfo &f : all_features()) {
    EXPECT_EQ(parse_feature(f.name), f.feature) << f.name;
    EXPECT_EQ(f.name.find_first_of("+- "), std::string_view::npos) << f.name;
    EXPECT_FALSE(f.behaviour.empty()) << f.name;
    EXPECT_FALSE(f.origin.empty()) << f.name;
    EXPECT_FALSE(f.evidence.empty()) << f.name;
  }
}

// The model reads features, not names: a composed profile behaves as its features say.
TEST(Profile, ModelFollowsTheFeatureNotTheName) {
  const auto open_dir_backing = [](const KernelProfile &p) {
    Model m(p);
    fuse_mount(m, InitReply{.passthrough = true, .max_stack_depth = 1});
    BackingMapArg arg;
    arg.kind = BackingFdKind::Dir;
    return fuse_dev_ioctl_backing_open(m, arg).err;
  };
  EXPECT_EQ(open_dir_backing(KernelProfile::V6_18), EISDIR);
  EXPECT_EQ(open_dir_backing(KernelProfile::V6_9), EOPNOTSUPP);
  // 6.12.0-6.12.47: neither test, any file type registers.
  EXPECT_EQ(open_dir_backing(*parse_profile("6.18-backing_rejects_non_regular")), 0);
  EXPECT_EQ(open_dir_backing(*parse_profile("6.9+backing_rejects_non_regular")), EISDIR);
}

TEST(Profile, TraceHeaderTakesAComposedProfile) {
  const sim::ParseResult r =
      sim::parse_trace("fpsim-trace 1\nkernel 6.18+backing_compared_by_inode\n"
                       "init passthrough max_stack_depth=1 => ok\n",
                       "t.trace");
  ASSERT_TRUE(std::holds_alternative<sim::Trace>(r)) << std::get<sim::ParseError>(r).str();
  EXPECT_TRUE(std::get<sim::Trace>(r).profile.has(Feature::BackingComparedByInode));
  const sim::ParseResult bad =
      sim::parse_trace("fpsim-trace 1\nkernel 6.18+nope\n", "t.trace");
  ASSERT_TRUE(std::holds_alternative<sim::ParseError>(bad));
  EXPECT_EQ(std::get<sim::ParseError>(bad).str(),
            "t.trace:2:8: unknown kernel feature 'nope' (fpsim profiles lists them)");
}

} // namespace
} // namespace fpsim::model
