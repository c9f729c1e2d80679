#include "sim/search/shrink.h"

#include "sim/trace/parser.h"
#include "sim/trace/printer.h"

#include <optional>
#include <set>
#include <string>
#include <utility>
#include <variant>

namespace fpsim::sim {
namespace {

using Name = NameRef;

std::vector<Name> uses(const Statement &s) {
  std::vector<Name> u;
  switch (s.op) {
  case Op::Read:
  case Op::Write:
  case Op::Close:
  case Op::Mmap:
  case Op::WriteBegin:
    u.push_back({NameKind::Handle, s.handle});
    break;
  case Op::Munmap:
    u.push_back({NameKind::Mapping, s.mapping});
    break;
  case Op::WriteEnd:
    u.push_back({NameKind::Write, s.write});
    break;
  case Op::Await:
    u.push_back({s.await_kind, s.await_slot});
    break;
  case Op::BackingClose:
    if (!s.literal_id)
      u.push_back({NameKind::Backing, s.backing});
    break;
  case Op::Open:
  case Op::Create:
  case Op::Opendir:
    if (s.reply.kind == ReplySpec::Kind::Flags && s.reply.id_kind == ReplySpec::IdKind::Name)
      u.push_back({NameKind::Backing, s.reply.backing});
    break;
  case Op::Check:
    if (s.check.kind == CheckKind::Backing)
      u.push_back({NameKind::Backing, s.check.slot});
    if (s.check.kind == CheckKind::File)
      u.push_back({NameKind::Handle, s.check.slot});
    for (const CheckProp &p : s.check.props)
      if (p.key == CheckKey::Fb && p.value >= 0)
        u.push_back({NameKind::Backing, static_cast<int>(p.value)});
    break;
  case Op::Init:
  case Op::BackingOpen:
  case Op::Abort:
  case Op::Umount:
  case Op::DevClose:
    break;
  }
  return u;
}

// Removes the marked statements and, transitively, every statement that uses a name whose
// declaration went.
std::vector<Statement> remove_with_users(const std::vector<Statement> &in, std::vector<bool> gone) {
  std::set<Name> dead;
  std::vector<Statement> out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const Statement &s = in[i];
    if (!gone[i])
      for (const Name &n : uses(s))
        if (dead.count(n)) {
          gone[i] = true;
          break;
        }
    if (gone[i]) {
      if (auto d = declared_name(s))
        dead.insert(*d);
      continue;
    }
    out.push_back(s);
  }
  return out;
}

class Shrinker {
public:
  Shrinker(const ShrinkPredicate &p, const ShrinkOptions &o) : pred_(p), opts_(o) {}

  ShrinkResult run(const Trace &failing) {
    ShrinkResult r;
    std::optional<Trace> canon = rebuild(failing, failing.statements);
    cur_ = canon ? std::move(*canon) : failing;
    bool progress = true;
    while (progress && !out_of_budget()) {
      progress = delete_chunks();
      progress = simplify() || progress;
    }
    rename();
    r.trace = std::move(cur_);
    r.attempts = attempts_;
    r.accepted = accepted_;
    r.exhausted = out_of_budget();
    return r;
  }

private:
  bool out_of_budget() const { return attempts_ >= opts_.max_attempts; }

  // The candidate as the parser sees it: names re-interned, dangling uses rejected.
  static std::optional<Trace> rebuild(const Trace &base, std::vector<Statement> stmts) {
    Trace t;
    t.path = base.path;
    t.profile = base.profile;
    t.profile_given = true;
    t.title = base.title;
    t.names = base.names;
    t.statements = std::move(stmts);
    ParseResult p = parse_trace(print_trace(t), base.path);
    if (auto *tr = std::get_if<Trace>(&p))
      return std::move(*tr);
    return std::nullopt;
  }

  bool attempt(std::vector<Statement> stmts) {
    if (out_of_budget() || stmts.empty())
      return false;
    std::optional<Trace> cand = rebuild(cur_, std::move(stmts));
    if (!cand)
      return false;
    ++attempts_;
    if (!pred_(*cand))
      return false;
    ++accepted_;
    cur_ = std::move(*cand);
    return true;
  }

  // B1, B2, ... H1, H2, ... in declaration order: the names of a trace written from scratch.
  void rename() {
    Trace t = cur_;
    auto seq = [](std::vector<std::string> &v, const char *prefix) {
      for (std::size_t i = 0; i < v.size(); ++i)
        v[i] = prefix + std::to_string(i + 1);
    };
    seq(t.names.backings, "B");
    seq(t.names.handles, "H");
    seq(t.names.mappings, "M");
    seq(t.names.writes, "W");
    std::optional<Trace> cand = rebuild(t, t.statements);
    if (!cand || print_trace(*cand) == print_trace(cur_))
      return;
    ++attempts_;
    if (pred_(*cand))
      cur_ = std::move(*cand);
  }

  bool delete_chunks() {
    bool any = false;
    std::size_t size = cur_.statements.size() / 2;
    if (size == 0)
      size = 1;
    for (;;) {
      bool progress = true;
      while (progress && !out_of_budget()) {
        progress = false;
        // From the end: late statements are the likeliest to be irrelevant, and deleting
        // them first keeps the earlier indices stable.
        std::size_t end = cur_.statements.size();
        while (end > 0 && !out_of_budget()) {
          const std::size_t begin = end >= size ? end - size : 0;
          std::vector<bool> gone(cur_.statements.size(), false);
          for (std::size_t i = begin; i < end; ++i)
            gone[i] = true;
          if (attempt(remove_with_users(cur_.statements, gone))) {
            progress = any = true;
            end = std::min(begin, cur_.statements.size());
          } else {
            end = begin;
          }
        }
      }
      if (size == 1 || out_of_budget())
        break;
      size /= 2;
    }
    return any;
  }

  // Simpler variants of one statement, simplest first.
  std::vector<Statement> variants(const Statement &s) const {
    std::vector<Statement> v;
    auto with = [&](auto change) {
      Statement c = s;
      change(c);
      v.push_back(std::move(c));
    };
    if (s.expect)
      with([](Statement &c) { c.expect.reset(); });
    switch (s.op) {
    case Op::Init:
      if (s.init.writeback_cache)
        with([](Statement &c) { c.init.writeback_cache = false; });
      if (s.init.direct_io_allow_mmap)
        with([](Statement &c) { c.init.direct_io_allow_mmap = false; });
      if (s.init.no_init_ext)
        with([](Statement &c) { c.init.no_init_ext = false; });
      if (s.init.max_stack_depth > 1)
        with([](Statement &c) { c.init.max_stack_depth = 1; });
      break;
    case Op::BackingOpen:
      if (s.source != SourceKind::File && !cur_.names.backing_files.empty())
        with([](Statement &c) {
          c.source = SourceKind::File;
          c.backing_file = 0;
        });
      if (s.source == SourceKind::File && s.backing_file > 0)
        with([](Statement &c) { c.backing_file = 0; });
      if (s.map_flags)
        with([](Statement &c) { c.map_flags = 0; });
      if (s.map_padding)
        with([](Statement &c) { c.map_padding = 0; });
      if (s.unprivileged)
        with([](Statement &c) { c.unprivileged = false; });
      break;
    case Op::BackingClose:
      if (s.unprivileged)
        with([](Statement &c) { c.unprivileged = false; });
      break;
    case Op::Open:
    case Op::Create:
    case Op::Opendir: {
      const ReplySpec &r = s.reply;
      if (r.kind != ReplySpec::Kind::Flags)
        with([](Statement &c) { c.reply = ReplySpec{}; });
      for (int b = 0; b < 32; ++b) {
        const std::uint32_t bit = 1u << b;
        if (r.flags & bit)
          with([bit](Statement &c) {
            c.reply.flags &= ~bit;
            if (!(c.reply.flags & reply_flag::PASSTHROUGH))
              c.reply.id_kind = ReplySpec::IdKind::None;
          });
        if (r.raw_bits & bit)
          with([bit](Statement &c) { c.reply.raw_bits &= ~bit; });
      }
      if (r.id_kind != ReplySpec::IdKind::None && !(r.flags & reply_flag::PASSTHROUGH))
        with([](Statement &c) { c.reply.id_kind = ReplySpec::IdKind::None; });
      if (s.o_direct)
        with([](Statement &c) { c.o_direct = false; });
      if (s.o_trunc)
        with([](Statement &c) { c.o_trunc = false; });
      if (s.op == Op::Open && s.access != AccessMode::ReadOnly)
        with([](Statement &c) { c.access = AccessMode::ReadOnly; });
      break;
    }
    case Op::Mmap:
      if (s.shared)
        with([](Statement &c) { c.shared = false; });
      break;
    case Op::Umount:
      if (s.detach)
        with([](Statement &c) { c.detach = false; });
      break;
    default:
      break;
    }
    return v;
  }

  bool simplify() {
    bool any = false;
    for (std::size_t i = 0; i < cur_.statements.size() && !out_of_budget(); ++i) {
      bool changed = true;
      while (changed && !out_of_budget()) {
        changed = false;
        for (const Statement &c : variants(cur_.statements[i])) {
          std::vector<Statement> stmts = cur_.statements;
          stmts[i] = c;
          if (attempt(std::move(stmts))) {
            changed = any = true;
            break;
          }
        }
      }
    }
    return any;
  }

  const ShrinkPredicate &pred_;
  ShrinkOptions opts_;
  Trace cur_;
  std::size_t attempts_ = 0;
  std::size_t accepted_ = 0;
};

} // namespace

ShrinkResult shrink_trace(const Trace &failing, const ShrinkPredicate &still_fails,
                          const ShrinkOptions &opts) {
  return Shrinker(still_fails, opts).run(failing);
}

} // namespace fpsim::sim
