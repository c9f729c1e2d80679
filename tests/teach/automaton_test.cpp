// fpsim dot's automata come from exploring the model: they must change when a profile or a
// seeded bug changes a transition, and stay put otherwise.
#include "sim/teach/automaton.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace fpsim::sim {
namespace {

ExploreOptions small(model::KernelProfile p, model::Mutant mu = model::Mutant::None) {
  ExploreOptions o;
  o.depth = 5;
  o.profile = p;
  o.mutant = mu;
  return o;
}

bool has_edge(const Automaton &a, const std::string &from, const std::string &label_part,
              const std::string &to) {
  return std::any_of(a.edges.begin(), a.edges.end(), [&](const AutomatonEdge &e) {
    return e.from == from && e.to == to && e.label.find(label_part) != std::string::npos;
  });
}

TEST(Automaton, IoModeStatesAndTheirTransitionsAreDerived) {
  const Automaton a = derive_automaton(AutomatonView::IoMode, small(model::KernelProfile::V6_18));
  for (const char *n : {"NEUTRAL", "CACHED(k)", "DIO(k)", "PT(fb,k)"})
    EXPECT_TRUE(a.nodes.count(n)) << n;
  EXPECT_TRUE(has_edge(a, "NEUTRAL", "open passthrough: ok", "PT(fb,k)"));
  EXPECT_TRUE(has_edge(a, "NEUTRAL", "open cached: ok", "CACHED(k)"));
  // Refusals are self-loops with the internal errno.
  EXPECT_TRUE(has_edge(a, "PT(fb,k)", "open cached: EIO +release (internal EINVAL)", "PT(fb,k)"));
  EXPECT_TRUE(has_edge(a, "CACHED(k)", "open passthrough: EIO +release (internal ETXTBSY)", "CACHED(k)"));
  // What must not be there: a cached open into a passthrough inode.
  EXPECT_FALSE(has_edge(a, "PT(fb,k)", "open cached: ok", "CACHED(k)"));
  EXPECT_FALSE(has_edge(a, "PT(fb,k)", "", "CACHED(k)"));
}

TEST(Automaton, SameInputsSameAutomaton) {
  const Automaton a = derive_automaton(AutomatonView::IoMode, small(model::KernelProfile::V6_18));
  const Automaton b = derive_automaton(AutomatonView::IoMode, small(model::KernelProfile::V6_18));
  EXPECT_EQ(a.edges, b.edges);
  EXPECT_EQ(to_dot(a, &b).find("only "), std::string::npos);
}

TEST(Automaton, AProfileChangesATransition) {
  const Automaton v618 = derive_automaton(AutomatonView::IoMode, small(model::KernelProfile::V6_18));
  const Automaton v15 = derive_automaton(AutomatonView::IoMode, small(model::KernelProfile::V15));
  EXPECT_NE(v618.edges, v15.edges);
  const std::string dot = to_dot(v618, &v15);
  EXPECT_NE(dot.find("only 6.18"), std::string::npos);
  EXPECT_NE(dot.find("only v15"), std::string::npos);
}

TEST(Automaton, AMutantChangesATransition) {
  // no-ebusy-check lets a second backing object attach over the first one.
  const Automaton model = derive_automaton(AutomatonView::IoMode, small(model::KernelProfile::V6_18));
  const Automaton mutant = derive_automaton(
      AutomatonView::IoMode, small(model::KernelProfile::V6_18, model::Mutant::NoEbusyCheck));
  EXPECT_NE(model.edges, mutant.edges);
  EXPECT_TRUE(has_edge(model, "PT(fb,k)", "(internal EBUSY)", "PT(fb,k)"));
  EXPECT_FALSE(has_edge(mutant, "PT(fb,k)", "(internal EBUSY)", "PT(fb,k)"));
}

TEST(Automaton, BackingLifetime) {
  const Automaton a = derive_automaton(AutomatonView::Backing, small(model::KernelProfile::V6_18));
  EXPECT_TRUE(has_edge(a, "unregistered", "backing_open: id=1", "registered"));
  EXPECT_TRUE(has_edge(a, "registered", "backing_close: ok", "freed"));
  EXPECT_TRUE(has_edge(a, "registered,\\nattached to an inode", "backing_close: ok",
                       "id closed,\\nattached to an inode"));
  // A closed id never comes back to the map.
  EXPECT_FALSE(has_edge(a, "id closed,\\nattached to an inode", "", "registered,\\nattached to an inode"));
}

} // namespace
} // namespace fpsim::sim
