#include "sim/trace/parser.h"

#include "base/assert.h"

#include <algorithm>

#include "sim/trace/printer.h"

#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fmt/format.h>
#include <map>
#include <memory>
#include <sys/stat.h>
#include <unordered_map>

namespace fpsim::sim {

std::string ParseError::str() const {
  if (line == 0)
    return fmt::format("{}: {}", path, message);
  return fmt::format("{}:{}:{}: {}", path, line, col, message);
}

namespace {

struct Token {
  std::string_view text;
  int col; // 1-based
};

struct Failure {
  int col;
  std::string message;
};

template <typename T> std::optional<T> parse_int(std::string_view s) {
  T v{};
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s.remove_prefix(2);
    base = 16;
  }
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty())
    return std::nullopt;
  return v;
}

// What the lines of one trace share while it is parsed.
struct TraceState {
  std::unordered_map<std::string, std::pair<NameKind, int>> declared;
  std::unordered_map<std::string, int> decl_line;
  // File name -> slot: every statement that names a file looks it up, and a linear search of
  // up to kMaxNamesPerKind names per statement made parsing quadratic.
  std::unordered_map<std::string, int> mount_slots;
  std::unordered_map<std::string, int> backing_file_slots;
};

// A name as an error message shows it: long ones are cut (at a UTF-8 boundary) so that one
// error stays one readable line.
std::string shown(std::string_view text) {
  if (text.size() <= 80)
    return std::string(text);
  std::size_t cut = 64;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80)
    --cut;
  return std::string(text.substr(0, cut)) + "...";
}

// One line's parse state; throws Failure, caught per line and turned into a ParseError.
class LineParser {
public:
  LineParser(Trace &t, TraceState &st, const std::vector<Token> &toks, int line, bool init_seen)
      : t_(t), st_(st), declared_(st.declared), decl_line_(st.decl_line), toks_(toks),
        line_(line), init_seen_(init_seen) {}

  Statement parse_statement() {
    Statement s;
    s.line = line_;
    s.col = toks_[0].col;
    const std::string_view op = toks_[0].text;
    pos_ = 1;
    static const std::map<std::string_view, Op> kOps = {
        {"init", Op::Init},         {"backing_open", Op::BackingOpen},
        {"backing_close", Op::BackingClose},
        {"open", Op::Open},         {"create", Op::Create},
        {"opendir", Op::Opendir},   {"read", Op::Read},
        {"write", Op::Write},       {"mmap", Op::Mmap},
        {"munmap", Op::Munmap},     {"close", Op::Close},
        {"write_begin", Op::WriteBegin},
        {"write_end", Op::WriteEnd}, {"await", Op::Await},
        {"abort", Op::Abort},       {"umount", Op::Umount},
        {"dev_close", Op::DevClose}, {"check", Op::Check},
    };
    auto it = kOps.find(op);
    if (it == kOps.end()) {
      if (op == "kernel" || op == "title" || op == "fpsim-trace")
        fail(toks_[0].col, fmt::format("'{}' is a header: headers come right after 'fpsim-trace 1', "
                                       "before the first statement",
                                       op));
      fail(toks_[0].col, fmt::format("unknown statement '{}'", op));
    }
    s.op = it->second;
    split_expectation();
    const bool file_op = s.op != Op::Init && s.op != Op::BackingOpen &&
                         s.op != Op::BackingClose && s.op != Op::DevClose && s.op != Op::Check;
    if (file_op && !init_seen_)
      fail(s.col, fmt::format("'{}' before 'init': the mount does not exist until the INIT reply",
                              op));
    if (s.op == Op::Init && init_seen_)
      fail(s.col, "a second 'init': a connection answers INIT once");
    switch (s.op) {
    case Op::Init:
      parse_init(s);
      break;
    case Op::BackingOpen:
      parse_backing_open(s);
      break;
    case Op::BackingClose:
      parse_backing_close(s);
      break;
    case Op::Open:
      parse_open(s);
      break;
    case Op::Create:
      s.handle = declare(NameKind::Handle, need("a handle name"));
      s.file = mount_file(need("a file name"));
      s.reply = parse_reply_option(need("reply=R"), true);
      break;
    case Op::Opendir:
      s.handle = declare(NameKind::Handle, need("a handle name"));
      s.reply = parse_reply_option(need("reply=R"), false);
      break;
    case Op::Read:
    case Op::Write:
    case Op::Close:
      s.handle = use(NameKind::Handle, need("a handle name"));
      break;
    case Op::Mmap: {
      s.mapping = declare(NameKind::Mapping, need("a mapping name"));
      s.handle = use(NameKind::Handle, need("a handle name"));
      const Token kind = need("shared or private");
      if (kind.text != "shared" && kind.text != "private")
        fail(kind.col, fmt::format("expected 'shared' or 'private', got '{}'", kind.text));
      s.shared = kind.text == "shared";
      break;
    }
    case Op::Munmap:
      s.mapping = use(NameKind::Mapping, need("a mapping name"));
      break;
    case Op::WriteBegin:
      s.write = declare(NameKind::Write, need("a write name"));
      s.handle = use(NameKind::Handle, need("a handle name"));
      break;
    case Op::WriteEnd:
      s.write = use(NameKind::Write, need("a write name"));
      break;
    case Op::Await: {
      const Token n = need("the name of a blocked statement");
      auto d = declared_.find(std::string(n.text));
      if (d == declared_.end())
        fail(n.col, fmt::format("unknown name '{}'", n.text));
      if (d->second.first == NameKind::Backing)
        fail(n.col, fmt::format("'{}' is a backing name: only opens, reads, writes and mmaps block",
                                n.text));
      s.await_kind = d->second.first;
      s.await_slot = d->second.second;
      break;
    }
    case Op::Umount:
      if (pos_ < args_end_) {
        const Token d = toks_[pos_++];
        if (d.text != "detach")
          fail(d.col, fmt::format("unknown umount option '{}' (expected 'detach')", d.text));
        s.detach = true;
      }
      break;
    case Op::Abort:
    case Op::DevClose:
      break;
    case Op::Check:
      parse_check(s);
      break;
    }
    if (pos_ < args_end_)
      fail(toks_[pos_].col, fmt::format("unexpected '{}' after {}", toks_[pos_].text, op));
    parse_expectation(s);
    return s;
  }

private:
  [[noreturn]] void fail(int col, std::string msg) { throw Failure{col, std::move(msg)}; }

  void split_expectation() {
    args_end_ = toks_.size();
    for (std::size_t i = 1; i < toks_.size(); ++i)
      if (toks_[i].text == "=>") {
        args_end_ = i;
        return;
      }
  }

  Token need(std::string_view what) {
    if (pos_ >= args_end_) {
      const Token &last = toks_[pos_ - 1];
      fail(last.col + static_cast<int>(last.text.size()),
           fmt::format("{}: missing {}", toks_[0].text, what));
    }
    return toks_[pos_++];
  }

  void check_name(const Token &tok, std::string_view what) {
    if (tok.text.size() > kMaxNameBytes)
      fail(tok.col, fmt::format("invalid {} '{}': {} bytes long, names are at most {} bytes", what,
                                shown(tok.text), tok.text.size(), kMaxNameBytes));
    if (!valid_name(tok.text))
      fail(tok.col, fmt::format("invalid {} '{}': names match [A-Za-z][A-Za-z0-9_.-]{{0,63}}", what,
                                shown(tok.text)));
  }

  // Each kind of name has its own table, and every table's size is what the executor's
  // per-name state (and so the model's live objects) grows with.
  void check_name_count(std::size_t have, const Token &tok, std::string_view noun) {
    if (have >= kMaxNamesPerKind)
      fail(tok.col, fmt::format("too many {}s: a trace names at most {} (the name-count limit)",
                                noun, kMaxNamesPerKind));
  }

  int declare(NameKind kind, const Token &tok) {
    check_name(tok, name_kind_noun(kind));
    const std::string name(tok.text);
    if (auto d = declared_.find(name); d != declared_.end())
      fail(tok.col, fmt::format("duplicate {} '{}': already declared at line {}",
                                name_kind_noun(kind), name, decl_line_[name]));
    auto &table = names_of(kind);
    check_name_count(table.size(), tok, name_kind_noun(kind));
    table.push_back(name);
    const int slot = static_cast<int>(table.size() - 1);
    declared_[name] = {kind, slot};
    decl_line_[name] = line_;
    return slot;
  }

  int use(NameKind kind, const Token &tok) {
    check_name(tok, name_kind_noun(kind));
    auto d = declared_.find(std::string(tok.text));
    if (d == declared_.end())
      fail(tok.col, fmt::format("unknown {} '{}': not declared before this line",
                                name_kind_noun(kind), tok.text));
    if (d->second.first != kind)
      fail(tok.col, fmt::format("'{}' is a {}, not a {}", tok.text,
                                name_kind_noun(d->second.first), name_kind_noun(kind)));
    return d->second.second;
  }

  std::vector<std::string> &names_of(NameKind kind) {
    switch (kind) {
    case NameKind::Backing:
      return t_.names.backings;
    case NameKind::Handle:
      return t_.names.handles;
    case NameKind::Mapping:
      return t_.names.mappings;
    case NameKind::Write:
      return t_.names.writes;
    }
    return t_.names.handles;
  }

  int intern(std::vector<std::string> &table, std::unordered_map<std::string, int> &slots,
             const Token &tok, std::string_view noun) {
    std::string name(tok.text);
    if (auto it = slots.find(name); it != slots.end())
      return it->second;
    check_name_count(table.size(), tok, noun);
    const int slot = static_cast<int>(table.size());
    table.push_back(name);
    slots.emplace(std::move(name), slot);
    return slot;
  }

  void check_file_name(const Token &tok) {
    if (tok.text.find('/') != std::string_view::npos || tok.text == "." || tok.text == "..")
      fail(tok.col, fmt::format("'{}' is a path: a file name is a plain name in the directory",
                                tok.text));
    check_name(tok, "file name");
  }

  int mount_file(const Token &tok) {
    check_file_name(tok);
    const int slot = intern(t_.names.mount_files, st_.mount_slots, tok, "mount file name");
    t_.names.mount_file_created.resize(t_.names.mount_files.size(), false);
    return slot;
  }

  int backing_file(const Token &tok) {
    check_file_name(tok);
    return intern(t_.names.backing_files, st_.backing_file_slots, tok, "backing file name");
  }

  // key=value options; returns the value part or nullopt when tok is not key=...
  static std::optional<std::string_view> option(const Token &tok, std::string_view key) {
    if (tok.text.size() > key.size() && tok.text.substr(0, key.size()) == key &&
        tok.text[key.size()] == '=')
      return tok.text.substr(key.size() + 1);
    return std::nullopt;
  }

  template <typename T> T number(const Token &tok, std::string_view v, std::string_view what) {
    auto n = parse_int<T>(v);
    if (!n)
      fail(tok.col, fmt::format("{}: '{}' is not a valid number", what, v));
    return *n;
  }

  void once(std::vector<std::string> &seen, const Token &tok, std::string_view key) {
    for (const auto &s : seen)
      if (s == key)
        fail(tok.col, fmt::format("option '{}' given twice", key));
    seen.emplace_back(key);
  }

  void parse_init(Statement &s) {
    std::vector<std::string> seen;
    while (pos_ < args_end_) {
      const Token tok = toks_[pos_++];
      if (tok.text == "passthrough") {
        once(seen, tok, "passthrough");
        s.init.passthrough = true;
      } else if (tok.text == "writeback_cache") {
        once(seen, tok, "writeback_cache");
        s.init.writeback_cache = true;
      } else if (tok.text == "direct_io_allow_mmap") {
        once(seen, tok, "direct_io_allow_mmap");
        s.init.direct_io_allow_mmap = true;
      } else if (tok.text == "no_init_ext") {
        once(seen, tok, "no_init_ext");
        s.init.no_init_ext = true;
      } else if (auto v = option(tok, "max_stack_depth")) {
        once(seen, tok, "max_stack_depth");
        s.init.max_stack_depth = number<int>(tok, *v, "max_stack_depth");
        if (s.init.max_stack_depth < 0 || s.init.max_stack_depth > 65535)
          fail(tok.col, "max_stack_depth: out of range 0..65535 (fuse_init_out has a u32, "
                        "but only 1..2 mean anything)");
      } else {
        fail(tok.col, fmt::format("unknown init option '{}'", tok.text));
      }
    }
  }

  void parse_backing_open(Statement &s) {
    s.backing = declare(NameKind::Backing, need("a backing name"));
    const Token src = need("a backing file or source");
    static const std::map<std::string_view, SourceKind> kSpecial = {
        {"dir", SourceKind::Dir},         {"pipe", SourceKind::Pipe},
        {"socket", SourceKind::Socket},   {"devnull", SourceKind::DevNull},
        {"badfd", SourceKind::BadFd},
    };
    if (auto sp = kSpecial.find(src.text); sp != kSpecial.end()) {
      s.source = sp->second;
    } else if (src.text.substr(0, 6) == "opath:") {
      s.source = SourceKind::OPath;
      s.backing_file = backing_file(Token{src.text.substr(6), src.col + 6});
    } else {
      s.source = SourceKind::File;
      s.backing_file = backing_file(src);
    }
    std::vector<std::string> seen;
    while (pos_ < args_end_) {
      const Token tok = toks_[pos_++];
      if (auto v = option(tok, "flags")) {
        once(seen, tok, "flags");
        s.map_flags = number<std::uint32_t>(tok, *v, "flags");
      } else if (auto v2 = option(tok, "padding")) {
        once(seen, tok, "padding");
        s.map_padding = number<std::uint64_t>(tok, *v2, "padding");
      } else if (tok.text == "unprivileged") {
        once(seen, tok, "unprivileged");
        s.unprivileged = true;
      } else if (auto v3 = option(tok, "on")) {
        once(seen, tok, "on");
        if (*v3 != "overlay")
          fail(tok.col, fmt::format("on: unknown filesystem '{}' (expected 'overlay')", *v3));
        if (!on_filesystem(s.source))
          fail(tok.col, fmt::format("on=overlay places a backing file or dir, not '{}'", src.text));
        s.source_fs = SourceFs::Overlay;
      } else {
        fail(tok.col, fmt::format("unknown backing_open option '{}'", tok.text));
      }
    }
  }

  // Pipes, sockets, /dev/null and fd -1 are on no filesystem the trace places.
  static bool on_filesystem(SourceKind k) {
    switch (k) {
    case SourceKind::File:
    case SourceKind::OPath:
    case SourceKind::Dir:
      return true;
    case SourceKind::Pipe:
    case SourceKind::Socket:
    case SourceKind::DevNull:
    case SourceKind::BadFd:
      return false;
    }
    FPSIM_UNREACHABLE("a SourceKind outside the enum");
  }

  void parse_backing_close(Statement &s) {
    const Token tok = need("a backing name or id=N");
    if (auto v = option(tok, "id")) {
      s.literal_id = number<std::uint32_t>(tok, *v, "id");
    } else {
      s.backing = use(NameKind::Backing, tok);
    }
    if (pos_ < args_end_ && toks_[pos_].text == "unprivileged") {
      ++pos_;
      s.unprivileged = true;
    }
  }

  void parse_open(Statement &s) {
    s.handle = declare(NameKind::Handle, need("a handle name"));
    s.file = mount_file(need("a file name"));
    std::vector<std::string> seen;
    bool have_reply = false;
    while (pos_ < args_end_) {
      const Token tok = toks_[pos_++];
      if (tok.text == "rdonly" || tok.text == "wronly" || tok.text == "rdwr") {
        once(seen, tok, "access mode");
        s.access = tok.text == "rdonly"   ? AccessMode::ReadOnly
                   : tok.text == "wronly" ? AccessMode::WriteOnly
                                          : AccessMode::ReadWrite;
      } else if (tok.text == "o_direct") {
        once(seen, tok, "o_direct");
        s.o_direct = true;
      } else if (tok.text == "o_trunc") {
        once(seen, tok, "o_trunc");
        s.o_trunc = true;
      } else if (option(tok, "reply")) {
        once(seen, tok, "reply");
        s.reply = parse_reply_option(tok, false);
        have_reply = true;
      } else {
        fail(tok.col, fmt::format("unknown open option '{}'", tok.text));
      }
    }
    if (!have_reply)
      fail(toks_[0].col, "open: missing reply=R (how the server answers OPEN)");
  }

  ReplySpec parse_reply_option(const Token &tok, bool for_create) {
    auto v = option(tok, "reply");
    if (!v)
      fail(tok.col, fmt::format("expected reply=R, got '{}'", tok.text));
    ReplySpec r;
    std::string_view body = *v;
    const int body_col = tok.col + 6;
    if (body.substr(0, 6) == "error:") {
      auto e = parse_errno(body.substr(6));
      if (!e)
        fail(body_col + 6, fmt::format("unknown errno '{}'", body.substr(6)));
      r.kind = ReplySpec::Kind::Error;
      r.error = *e;
      return r;
    }
    if (body == "enosys") {
      if (for_create)
        fail(body_col, "create: reply=enosys is not supported (the kernel falls back to "
                       "MKNOD+OPEN, which fpsim does not model)");
      r.kind = ReplySpec::Kind::Enosys;
      return r;
    }
    const std::size_t at = body.find('@');
    std::string_view flags = body.substr(0, at);
    if (at != std::string_view::npos) {
      std::string_view id = body.substr(at + 1);
      const int id_col = body_col + static_cast<int>(at) + 1;
      if (id.substr(0, 3) == "id=") {
        auto n = parse_int<std::int32_t>(id.substr(3));
        if (!n)
          fail(id_col, fmt::format("backing id '{}' is not a 32-bit integer", id.substr(3)));
        r.id_kind = ReplySpec::IdKind::Literal;
        r.literal_id = *n;
      } else {
        r.id_kind = ReplySpec::IdKind::Name;
        r.backing = use(NameKind::Backing, Token{id, id_col});
      }
    }
    static const std::map<std::string_view, std::uint32_t> kFlags = {
        {"passthrough", reply_flag::PASSTHROUGH},
        {"direct_io", reply_flag::DIRECT_IO},
        {"keep_cache", reply_flag::KEEP_CACHE},
        {"noflush", reply_flag::NOFLUSH},
        {"parallel_direct_writes", reply_flag::PARALLEL_DIRECT_WRITES},
        {"nonseekable", reply_flag::NONSEEKABLE},
        {"stream", reply_flag::STREAM},
        {"cache_dir", reply_flag::CACHE_DIR},
    };
    int col = body_col;
    bool cached = false;
    std::size_t start = 0;
    while (start <= flags.size()) {
      const std::size_t bar = flags.find('|', start);
      const std::string_view f =
          flags.substr(start, bar == std::string_view::npos ? std::string_view::npos : bar - start);
      col = body_col + static_cast<int>(start);
      if (f == "cached") {
        cached = true;
      } else if (f.substr(0, 4) == "bit:") {
        auto b = parse_int<int>(f.substr(4));
        if (!b || *b < 0 || *b > 31)
          fail(col, fmt::format("reply flag '{}': bit must be 0..31", f));
        r.raw_bits |= 1u << *b;
      } else if (auto it = kFlags.find(f); it != kFlags.end()) {
        r.flags |= it->second;
      } else {
        fail(col, fmt::format("unknown reply flag '{}'", f));
      }
      if (bar == std::string_view::npos)
        break;
      start = bar + 1;
    }
    if (cached && (r.flags || r.raw_bits))
      fail(body_col, "reply flag 'cached' means no flags: it cannot be combined with others");
    return r;
  }

  void parse_check(Statement &s) {
    const Token what = need("what to check (inode, backing, file, conn, last, drained)");
    CheckSpec &c = s.check;
    std::vector<CheckKey> allowed;
    if (what.text == "inode") {
      c.kind = CheckKind::Inode;
      c.slot = mount_file(need("a file name"));
      allowed = {CheckKey::Ctr, CheckKey::Fb, CheckKey::CacheIoMode};
    } else if (what.text == "backing") {
      c.kind = CheckKind::Backing;
      c.slot = use(NameKind::Backing, need("a backing name"));
      allowed = {CheckKey::Refs, CheckKey::Freed};
    } else if (what.text == "file") {
      c.kind = CheckKind::File;
      c.slot = use(NameKind::Handle, need("a handle name"));
      allowed = {CheckKey::Iomode, CheckKey::Passthrough, CheckKey::Released};
    } else if (what.text == "conn") {
      c.kind = CheckKind::Conn;
      allowed = {CheckKey::Passthrough, CheckKey::Connected, CheckKey::NoOpen};
    } else if (what.text == "last") {
      c.kind = CheckKind::Last;
      allowed = {CheckKey::Internal};
    } else if (what.text == "drained") {
      c.kind = CheckKind::Drained;
    } else {
      fail(what.col, fmt::format("unknown check '{}' (expected inode, backing, file, conn, last "
                                 "or drained)",
                                 what.text));
    }
    while (pos_ < args_end_) {
      const Token tok = toks_[pos_++];
      CheckProp p = check_prop(tok);
      bool ok = false;
      for (CheckKey k : allowed)
        ok = ok || k == p.key;
      if (!ok)
        fail(tok.col, fmt::format("check {}: '{}' does not apply", what.text, tok.text));
      for (const CheckProp &q : c.props)
        if (q.key == p.key)
          fail(tok.col, fmt::format("check {}: property given twice", what.text));
      c.props.push_back(p);
    }
    if (c.props.empty() && c.kind != CheckKind::Drained)
      fail(what.col, fmt::format("check {}: nothing to check", what.text));
  }

  CheckProp check_prop(const Token &tok) {
    auto flag01 = [&](std::string_view v) -> std::int64_t {
      if (v != "0" && v != "1")
        fail(tok.col, fmt::format("'{}': expected 0 or 1", tok.text));
      return v == "1";
    };
    if (tok.text == "freed")
      return {CheckKey::Freed, 1};
    if (auto v = option(tok, "ctr"))
      return {CheckKey::Ctr, number<std::int64_t>(tok, *v, "ctr")};
    if (auto v = option(tok, "refs"))
      return {CheckKey::Refs, number<std::int64_t>(tok, *v, "refs")};
    if (auto v = option(tok, "fb")) {
      if (*v == "none")
        return {CheckKey::Fb, -1};
      return {CheckKey::Fb, use(NameKind::Backing, Token{*v, tok.col + 3})};
    }
    if (auto v = option(tok, "cache_io_mode"))
      return {CheckKey::CacheIoMode, flag01(*v)};
    if (auto v = option(tok, "iomode")) {
      for (model::IoMode m : {model::IoMode::None, model::IoMode::Cached, model::IoMode::Uncached})
        if (*v == iomode_name(m))
          return {CheckKey::Iomode, static_cast<int>(m)};
      fail(tok.col, fmt::format("'{}': iomode is none, cached or uncached", tok.text));
    }
    if (auto v = option(tok, "passthrough"))
      return {CheckKey::Passthrough, flag01(*v)};
    if (auto v = option(tok, "released"))
      return {CheckKey::Released, flag01(*v)};
    if (auto v = option(tok, "connected"))
      return {CheckKey::Connected, flag01(*v)};
    if (auto v = option(tok, "no_open"))
      return {CheckKey::NoOpen, flag01(*v)};
    if (auto v = option(tok, "internal")) {
      if (*v == "0")
        return {CheckKey::Internal, 0};
      auto e = parse_errno(*v);
      if (!e)
        fail(tok.col + 9, fmt::format("unknown errno '{}'", *v));
      return {CheckKey::Internal, *e};
    }
    fail(tok.col, fmt::format("unknown check property '{}'", tok.text));
  }

  void parse_expectation(Statement &s) {
    if (args_end_ == toks_.size())
      return;
    const Token arrow = toks_[args_end_];
    if (args_end_ + 1 >= toks_.size())
      fail(arrow.col + 2, "'=>' without an expectation");
    if (s.op == Op::Check)
      fail(arrow.col, "a check has no expectation: it passes or reports a violation");
    const Token tok = toks_[args_end_ + 1];
    Outcome o;
    if (tok.text == "ok") {
      o.kind = Outcome::Kind::Ok;
    } else if (tok.text == "backing") {
      o.kind = Outcome::Kind::Backing;
    } else if (tok.text == "fuse") {
      o.kind = Outcome::Kind::Fuse;
    } else if (tok.text == "blocks") {
      o.kind = Outcome::Kind::Blocks;
    } else if (auto v = option(tok, "id")) {
      o.kind = Outcome::Kind::Id;
      o.id = number<std::int64_t>(tok, *v, "id");
    } else if (auto e = parse_errno(tok.text)) {
      o.kind = Outcome::Kind::Errno;
      o.err = *e;
    } else if (!tok.text.empty() && tok.text[0] == 'E') {
      fail(tok.col, fmt::format("unknown errno '{}'", tok.text));
    } else {
      fail(tok.col, fmt::format("unknown expectation '{}' (expected ok, an errno, id=N, "
                                "backing, fuse or blocks)",
                                tok.text));
    }
    for (std::size_t i = args_end_ + 2; i < toks_.size(); ++i) {
      const Token &obs = toks_[i];
      if (obs.text != "+release")
        fail(obs.col, fmt::format("unknown observation '{}' (expected +release)", obs.text));
      if (o.release)
        fail(obs.col, "+release given twice");
      if (s.op != Op::Open && s.op != Op::Create && s.op != Op::Await)
        fail(obs.col, fmt::format("+release applies to open and create, not {}", op_name(s.op)));
      o.release = true;
    }
    check_expectation_fits(s, o, tok);
    s.expect = o;
  }

  void check_expectation_fits(const Statement &s, const Outcome &o, const Token &tok) {
    bool fits = true;
    switch (o.kind) {
    case Outcome::Kind::Ok:
      fits = s.op != Op::Read && s.op != Op::Write && s.op != Op::WriteEnd;
      break;
    case Outcome::Kind::Errno:
    case Outcome::Kind::Invalid:
      break;
    case Outcome::Kind::Id:
      fits = s.op == Op::BackingOpen;
      break;
    case Outcome::Kind::Backing:
      fits = s.op == Op::Read || s.op == Op::Write || s.op == Op::WriteBegin || s.op == Op::Await;
      break;
    case Outcome::Kind::Fuse:
      fits = s.op == Op::Read || s.op == Op::Write || s.op == Op::WriteBegin ||
             s.op == Op::WriteEnd || s.op == Op::Await;
      break;
    case Outcome::Kind::Blocks:
      // An await of a call still asleep blocks again.
      fits = may_block(s.op) || s.op == Op::Await;
      break;
    }
    if (!fits)
      fail(tok.col, fmt::format("'{}' is not an outcome {} can have", tok.text, op_name(s.op)));
  }

  Trace &t_;
  TraceState &st_;
  std::unordered_map<std::string, std::pair<NameKind, int>> &declared_;
  std::unordered_map<std::string, int> &decl_line_;
  const std::vector<Token> &toks_;
  int line_;
  bool init_seen_;
  std::size_t pos_ = 0;
  std::size_t args_end_ = 0;
};

// Splits a line into tokens and finds the comment start; quoted strings (titles) may hold '#'.
// Fills toks, reused from line to line so that a line costs no allocation.
void tokenize(std::string_view line, std::optional<std::size_t> *comment,
              std::vector<Token> &toks) {
  toks.clear();
  std::size_t i = 0;
  *comment = std::nullopt;
  while (i < line.size()) {
    const char c = line[i];
    if (c == ' ' || c == '\t' || c == '\r') {
      ++i;
      continue;
    }
    if (c == '#') {
      *comment = i;
      break;
    }
    const std::size_t start = i;
    if (c == '"') {
      const std::size_t close = line.find('"', i + 1);
      i = close == std::string_view::npos ? line.size() : close + 1;
    } else {
      while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r' &&
             line[i] != '#')
        ++i;
    }
    toks.push_back(Token{line.substr(start, i - start), static_cast<int>(start) + 1});
  }
}

// Strict UTF-8: no overlong forms, no UTF-16 surrogates, nothing above U+10FFFF.
bool valid_utf8(std::string_view s, std::size_t *bad) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = 0;
    std::uint32_t cp = 0;
    std::uint32_t min = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c >> 5) == 0x6) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c >> 4) == 0xE) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c >> 3) == 0x1E) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      *bad = i;
      return false;
    }
    if (i + len > s.size()) {
      *bad = i;
      return false;
    }
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) {
        *bad = i;
        return false;
      }
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      *bad = i;
      return false;
    }
    i += len;
  }
  return true;
}

std::string too_big_message(std::uint64_t bytes) {
  return fmt::format("trace is {} bytes: at most {} bytes ({} MiB) per trace file", bytes,
                     kMaxTraceBytes, kMaxTraceBytes >> 20);
}

} // namespace

bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > kMaxNameBytes)
    return false;
  if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z')))
    return false;
  for (char c : s.substr(1)) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok)
      return false;
  }
  return true;
}

ParseResult parse_trace(std::string_view text, const std::string &path) {
  Trace t;
  t.path = path;
  if (text.size() > kMaxTraceBytes)
    return ParseError{path, 1, 1, too_big_message(text.size())};
  TraceState st;
  enum class Stage { Magic, Headers, Body } stage = Stage::Magic;
  bool init_seen = false;
  bool title_given = false;
  int line_no = 0;
  std::size_t start = 0;
  // Sized once: every line is kept, and a long trace otherwise moves them some twenty times.
  t.source_lines.reserve(std::min<std::size_t>(
      static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')) + 1, kMaxLines + 1));
  std::vector<Token> toks;
  while (start <= text.size()) {
    std::size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos)
      nl = text.size();
    const std::string_view line = text.substr(start, nl - start);
    ++line_no;
    const bool last = nl == text.size();
    start = nl + 1;
    auto err = [&](int col, std::string msg) -> ParseResult {
      return ParseError{path, line_no, col, std::move(msg)};
    };
    // The text after the last line end is not a line of its own.
    if (line_no > static_cast<int>(kMaxLines) && !(last && line.empty()))
      return err(1, fmt::format("more than {} lines: a trace has at most {} lines, blank and "
                                "comment lines included",
                                kMaxLines, kMaxLines));
    // A CRLF line's '\r' is its line end, not its content.
    const std::size_t content =
        !line.empty() && line.back() == '\r' ? line.size() - 1 : line.size();
    if (content > kMaxLineBytes)
      return err(static_cast<int>(kMaxLineBytes) + 1,
                 fmt::format("line is {} bytes long: at most {} bytes per line", content,
                             kMaxLineBytes));
    t.source_lines.emplace_back(line);
    std::size_t bad = 0;
    if (!valid_utf8(line, &bad))
      return err(static_cast<int>(bad) + 1, "invalid UTF-8");
    std::optional<std::size_t> comment;
    tokenize(line, &comment, toks);
    if (toks.empty()) {
      if (last)
        break;
      continue;
    }
    const std::string_view head = toks[0].text;
    if (stage == Stage::Magic) {
      if (head != "fpsim-trace")
        return err(toks[0].col, "expected 'fpsim-trace 1' as the first statement");
      if (toks.size() != 2)
        return err(toks[0].col, "expected 'fpsim-trace 1'");
      if (toks[1].text != "1")
        return err(toks[1].col, fmt::format("unsupported trace format version '{}' (this fpsim "
                                            "reads version 1)",
                                            toks[1].text));
      stage = Stage::Headers;
      continue;
    }
    if (stage == Stage::Headers && (head == "kernel" || head == "title")) {
      if (head == "kernel") {
        if (toks.size() != 2)
          return err(toks[0].col, fmt::format("expected 'kernel PROFILE' ({})",
                                              model::builtin_profile_names()));
        if (t.profile_given)
          return err(toks[0].col, "a second 'kernel' header");
        std::string why;
        auto p = model::parse_profile(toks[1].text, &why);
        if (!p)
          return err(toks[1].col, why);
        t.profile = *p;
        t.profile_given = true;
      } else {
        if (toks.size() != 2 || toks[1].text.size() < 2 || toks[1].text.front() != '"' ||
            toks[1].text.back() != '"')
          return err(toks[0].col, "expected 'title \"...\"' (one quoted string, no '\"' inside)");
        if (title_given)
          return err(toks[0].col, "a second 'title' header");
        title_given = true;
        t.title = std::string(toks[1].text.substr(1, toks[1].text.size() - 2));
      }
      continue;
    }
    stage = Stage::Body;
    if (t.statements.size() >= kMaxStatements)
      return err(toks[0].col, fmt::format("more than {} statements: a trace has at most {} "
                                          "statements, checks included",
                                          kMaxStatements, kMaxStatements));
    LineParser lp(t, st, toks, line_no, init_seen);
    try {
      Statement s = lp.parse_statement();
      s.comment_pos = comment;
      std::size_t end = line.size();
      for (std::size_t k = 0; k < toks.size(); ++k)
        if (toks[k].text == "=>") {
          end = static_cast<std::size_t>(toks[k].col - 1);
          break;
        }
      if (end == line.size() && comment)
        end = *comment;
      while (end > 0 && (line[end - 1] == ' ' || line[end - 1] == '\t' || line[end - 1] == '\r'))
        --end;
      s.text_end = end;
      if (s.op == Op::Create)
        t.names.mount_file_created.at(static_cast<std::size_t>(s.file)) = true;
      init_seen = init_seen || s.op == Op::Init;
      t.statements.push_back(std::move(s));
    } catch (const Failure &f) {
      return err(f.col, f.message);
    }
    if (last)
      break;
  }
  if (stage == Stage::Magic)
    return ParseError{path, line_no == 0 ? 1 : line_no, 1,
                      "empty trace: expected 'fpsim-trace 1' as the first statement"};
  return t;
}

ParseResult load_trace(const std::string &path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE *)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f)
    return ParseError{path, 0, 0, fmt::format("cannot open: {}", std::strerror(errno))};
  // The size comes from the inode before anything is read; a pipe or a device has none, so the
  // read below stops one byte past the limit as well.
  struct stat st {};
  if (fstat(fileno(f.get()), &st) != 0)
    st.st_mode = 0;
  if (S_ISREG(st.st_mode) && static_cast<std::uint64_t>(st.st_size) > kMaxTraceBytes)
    return ParseError{path, 1, 1, too_big_message(static_cast<std::uint64_t>(st.st_size))};
  std::string text;
  if (S_ISREG(st.st_mode))
    text.reserve(static_cast<std::size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    const std::size_t n = std::fread(buf, 1, sizeof buf, f.get());
    text.append(buf, n);
    if (text.size() > kMaxTraceBytes)
      return ParseError{path, 1, 1, too_big_message(text.size())};
    if (n < sizeof buf)
      break;
  }
  if (std::ferror(f.get()))
    return ParseError{path, 0, 0, fmt::format("cannot read: {}", std::strerror(errno))};
  return parse_trace(text, path);
}

} // namespace fpsim::sim
