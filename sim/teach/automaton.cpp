#include "sim/teach/automaton.h"

#include "sim/trace/printer.h"

#include <fmt/format.h>

#include <map>

namespace fpsim::sim {
namespace {

using model::FbId;
using model::FuseInode;
using model::Model;

// The inode of mount file 0, the one explored; none before its first open.
const FuseInode *explored_inode(const Model &m) {
  for (const FuseInode &fi : m.inodes)
    if (fi.name == 0)
      return &fi;
  return nullptr;
}

std::string iomode_state(const Model &m) {
  const FuseInode *fi = explored_inode(m);
  if (fi == nullptr)
    return "NEUTRAL";
  if (fi->evicted)
    return "evicted";
  std::string s;
  if (fi->fb)
    s = "PT(fb,k)";
  else if (fi->iocachectr > 0)
    s = "CACHED(k)";
  else if (fi->iocachectr < 0)
    s = "DIO(k)";
  else
    s = "NEUTRAL";
  // FUSE_I_CACHE_IO_MODE without a cached reference: a cached opener sleeps until writes end.
  if (fi->cache_io_mode && fi->iocachectr <= 0)
    s += "\\n+ cached opener waiting";
  return s;
}

std::string backing_state(const Model &m, std::uint32_t b) {
  if (b >= m.backings.size())
    return "unregistered";
  if (m.backings[b].freed)
    return "freed";
  bool in_map = false;
  for (const auto &[id, fb] : m.fc.backing_files_map)
    in_map = in_map || fb == FbId{b};
  int attached = 0;
  for (const FuseInode &fi : m.inodes)
    attached += !fi.evicted && fi.fb == FbId{b};
  std::string s = in_map ? "registered" : "id closed";
  if (attached > 0)
    s += ",\\nattached to an inode";
  return s;
}

// The reply's flags without the id it names: which id is told by the outcome (EBUSY for another
// object, EINVAL/ENOENT-like errors for a bad id).
std::string reply_flags(const ReplySpec &r) {
  ReplySpec flags = r;
  flags.id_kind = ReplySpec::IdKind::None;
  return format_reply(flags, Names{});
}

std::string label(const Statement &st, const Outcome &o) {
  std::string op(op_name(st.op));
  if (st.op == Op::Open || st.op == Op::Create) {
    op += " " + reply_flags(st.reply);
    if (st.o_direct)
      op += " o_direct";
  } else if (st.op == Op::Mmap) {
    op += st.shared ? " shared" : " private";
  }
  return op + ": " + format_outcome_detailed(o);
}

// Statements that try the inode's io mode: kept as self-loops too, so refusals show.
bool tries_iomode(Op op) {
  switch (op) {
  case Op::Open:
  case Op::Create:
  case Op::Close:
  case Op::Mmap:
  case Op::Write:
  case Op::WriteBegin:
  case Op::WriteEnd:
  case Op::Await:
    return true;
  case Op::Init:
  case Op::BackingOpen:
  case Op::BackingClose:
  case Op::Opendir:
  case Op::Read:
  case Op::Munmap:
  case Op::Abort:
  case Op::Umount:
  case Op::DevClose:
  case Op::Check:
    return false;
  }
  return false;
}

std::string escape(const std::string &s) {
  std::string out;
  for (char c : s) {
    if (c == '"')
      out += '\\';
    out += c;
  }
  return out;
}

// Abort, umount, dev_close and every step after them.
bool is_teardown(const Model &before, Op op) {
  return op == Op::Abort || op == Op::Umount || op == Op::DevClose || !before.fc.connected ||
         !before.fc.mounted;
}

} // namespace

Automaton derive_automaton(AutomatonView view, ExploreOptions o, bool teardown) {
  Automaton a;
  a.view = view;
  a.title = std::string(model::profile_name(o.profile));
  if (o.mutant != model::Mutant::None)
    a.title += " " + std::string(model::mutant_name(o.mutant));
  o.inodes = 1;
  o.stop_at_violation = false;
  o.compare_reference = false;
  o.on_state = nullptr;
  o.on_level = nullptr;
  o.on_transition = [&](const Model &before, const Statement &st, const Outcome &out,
                        const Model &after) {
    if (!teardown && is_teardown(before, st.op))
      return;
    switch (view) {
    case AutomatonView::IoMode: {
      const std::string from = iomode_state(before);
      const std::string to = iomode_state(after);
      a.nodes.insert(from);
      a.nodes.insert(to);
      if (from != to || tries_iomode(st.op))
        a.edges.insert({from, label(st, out), to});
      return;
    }
    case AutomatonView::Backing:
      for (std::uint32_t b = 0; b < after.backings.size(); ++b) {
        const std::string from = backing_state(before, b);
        const std::string to = backing_state(after, b);
        a.nodes.insert(from);
        a.nodes.insert(to);
        if (from != to)
          a.edges.insert({from, label(st, out), to});
      }
      return;
    }
  };
  a.states = explore(o).states;
  return a;
}

std::string to_dot(const Automaton &a, const Automaton *other) {
  enum class Side : std::uint8_t { Both, OnlyA, OnlyOther };
  // One arrow per (from, to, side), its label every transition on it.
  std::map<std::tuple<std::string, std::string, Side>, std::vector<std::string>> arrows;
  std::set<std::string> nodes = a.nodes;
  for (const AutomatonEdge &e : a.edges) {
    const bool shared = other == nullptr || other->edges.count(e) > 0;
    arrows[{e.from, e.to, shared ? Side::Both : Side::OnlyA}].push_back(e.label);
  }
  if (other != nullptr) {
    nodes.insert(other->nodes.begin(), other->nodes.end());
    for (const AutomatonEdge &e : other->edges)
      if (a.edges.count(e) == 0)
        arrows[{e.from, e.to, Side::OnlyOther}].push_back(e.label);
  }
  const char *name = a.view == AutomatonView::IoMode ? "iomode" : "backing";
  std::string title = a.view == AutomatonView::IoMode ? "per-inode io mode" : "backing object lifetime";
  title += " (" + a.title + (other ? " vs " + other->title : "") + ", derived by fpsim explore)";
  std::string out = fmt::format("digraph {} {{\n  label=\"{}\";\n  labelloc=t;\n  rankdir=LR;\n"
                                "  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n"
                                "  edge [fontname=\"Helvetica\", fontsize=9];\n",
                                name, escape(title));
  for (const std::string &n : nodes)
    out += fmt::format("  \"{}\";\n", escape(n));
  for (const auto &[key, labels] : arrows) {
    const auto &[from, to, side] = key;
    std::string text;
    switch (side) {
    case Side::Both:
      break;
    case Side::OnlyA:
      text = "only " + a.title + ":\\n";
      break;
    case Side::OnlyOther:
      text = "only " + other->title + ":\\n";
      break;
    }
    for (const std::string &l : labels)
      text += escape(l) + "\\l";
    std::string style;
    switch (side) {
    case Side::Both:
      break;
    case Side::OnlyA:
      style = ", color=red, fontcolor=red";
      break;
    case Side::OnlyOther:
      style = ", color=blue, fontcolor=blue, style=dashed";
      break;
    }
    out += fmt::format("  \"{}\" -> \"{}\" [label=\"{}\"{}];\n", escape(from), escape(to), text,
                       style);
  }
  out += "}\n";
  return out;
}

} // namespace fpsim::sim
