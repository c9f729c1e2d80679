// Automata derived by exploring the model, not drawn by hand (fpsim dot): the per-inode io-mode
// automaton (NEUTRAL, CACHED(k), DIO(k), PT(fb,k), with k abstracted) and the lifetime of a
// backing object. Each is the set of abstract transitions `explore` meets on one inode; two
// automata (two profiles, or a mutant against the model) can be compared edge by edge.
#pragma once

#include "sim/search/explore.h"

#include <set>
#include <string>
#include <tuple>

namespace fpsim::sim {

enum class AutomatonView : std::uint8_t { IoMode, Backing };

struct AutomatonEdge {
  std::string from, label, to;
  auto operator<=>(const AutomatonEdge &) const = default;
};

struct Automaton {
  AutomatonView view = AutomatonView::IoMode;
  std::string title;
  std::set<std::string> nodes;
  std::set<AutomatonEdge> edges;
  std::size_t states = 0; // concrete states explored to derive it
};

// Explores one inode (and its backing file) to `depth` statements under `base`'s profile and
// mutant, abstracting every transition for the view. Without `teardown`, abort, umount and
// dev_close and everything after them are left out (the mounted, connected life only).
Automaton derive_automaton(AutomatonView view, ExploreOptions base, bool teardown = false);

// Graphviz text. With `other`, edges only in `a` are drawn red and marked with a's title, edges
// only in `other` blue and dashed with other's title; shared edges plain.
std::string to_dot(const Automaton &a, const Automaton *other = nullptr);

} // namespace fpsim::sim
