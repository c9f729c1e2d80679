// Trace format v1 parser and printer: round trips (the corpus and hand-written statements), every
// class of malformed input with its exact line, column and message, and the lexical details
// (comments, blank lines, tabs, CRLF, UTF-8, Statement::line/col).
#include "sim/trace/parser.h"
#include "sim/trace/printer.h"
#include "tests/traces.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace {

using namespace fpsim::sim;

const std::string kMagic = "fpsim-trace 1\n";
// Statements after this prefix start on line 3.
const std::string kInit = "fpsim-trace 1\ninit passthrough max_stack_depth=1\n";

using fpsim::test::expect_error;
using fpsim::test::parse_ok;

// The statement as the printer writes it, expectation included.
std::string stmt_text(const Statement &s, const Names &n) {
  std::string t = format_statement(s, n);
  if (s.expect)
    t += " => " + format_outcome(*s.expect);
  return t;
}

// Field by field: everything the executor reads, not just the printed text.
void expect_same_statement(const Statement &a, const Statement &b) {
  EXPECT_EQ(a.op, b.op);
  EXPECT_EQ(a.handle, b.handle);
  EXPECT_EQ(a.file, b.file);
  EXPECT_EQ(a.backing, b.backing);
  EXPECT_EQ(a.mapping, b.mapping);
  EXPECT_EQ(a.write, b.write);
  EXPECT_EQ(a.source, b.source);
  EXPECT_EQ(a.backing_file, b.backing_file);
  EXPECT_EQ(a.source_fs, b.source_fs);
  EXPECT_EQ(a.map_flags, b.map_flags);
  EXPECT_EQ(a.map_padding, b.map_padding);
  EXPECT_EQ(a.unprivileged, b.unprivileged);
  EXPECT_EQ(a.literal_id, b.literal_id);
  EXPECT_EQ(a.access, b.access);
  EXPECT_EQ(a.o_direct, b.o_direct);
  EXPECT_EQ(a.o_trunc, b.o_trunc);
  EXPECT_EQ(a.reply, b.reply);
  EXPECT_EQ(a.shared, b.shared);
  EXPECT_EQ(a.detach, b.detach);
  EXPECT_EQ(a.init, b.init);
  EXPECT_EQ(a.await_kind, b.await_kind);
  EXPECT_EQ(a.await_slot, b.await_slot);
  EXPECT_EQ(a.check, b.check);
  ASSERT_EQ(a.expect.has_value(), b.expect.has_value());
  if (a.expect) {
    EXPECT_EQ(a.expect->kind, b.expect->kind);
    EXPECT_EQ(a.expect->err, b.expect->err);
    EXPECT_EQ(a.expect->id, b.expect->id);
    EXPECT_EQ(a.expect->release, b.expect->release);
    EXPECT_TRUE(same_outcome(*a.expect, *b.expect));
  }
}

// parse -> print -> parse -> print: the printed texts agree and so do the parsed traces.
void expect_round_trip(const Trace &original) {
  const std::string printed = print_trace(original);
  const Trace again = parse_ok(printed, original.path + " (printed)");
  EXPECT_EQ(print_trace(again), printed);
  EXPECT_EQ(again.profile, original.profile);
  EXPECT_EQ(again.title, original.title);
  fpsim::test::expect_same_names(original.names, again.names);
  ASSERT_EQ(again.statements.size(), original.statements.size()) << printed;
  for (std::size_t i = 0; i < original.statements.size(); ++i) {
    const Statement &a = original.statements[i];
    const Statement &b = again.statements[i];
    SCOPED_TRACE(original.path + ":" + std::to_string(a.line) + ": " +
                 stmt_text(a, original.names));
    EXPECT_EQ(format_statement(a, original.names), format_statement(b, again.names));
    EXPECT_EQ(a.expect.has_value(), b.expect.has_value());
    if (a.expect && b.expect) {
      EXPECT_EQ(format_outcome(*a.expect), format_outcome(*b.expect));
    }
    expect_same_statement(a, b);
    // print_trace writes the header lines "fpsim-trace 1", "kernel", maybe "title", then one line
    // per statement.
    EXPECT_EQ(b.line, static_cast<int>(i) + (original.title.empty() ? 3 : 4));
    EXPECT_EQ(b.col, 1);
  }
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

TEST(ParserRoundTrip, EveryCorpusTrace) {
  const std::vector<std::string> files = fpsim::test::corpus();
  ASSERT_GE(files.size(), 50u) << "the corpus under " FPSIM_SOURCE_DIR "/traces looks incomplete";
  for (const std::string &f : files) {
    SCOPED_TRACE(f);
    ParseResult r = load_trace(f);
    if (auto *e = std::get_if<ParseError>(&r)) {
      ADD_FAILURE() << e->str();
      continue;
    }
    const Trace &t = std::get<Trace>(r);
    EXPECT_EQ(t.path, f);
    EXPECT_FALSE(t.statements.empty());
    expect_round_trip(t);
  }
}

struct Line {
  std::string in;        // as written in the trace
  std::string canonical = ""; // as print_trace writes it back; empty: as written
};

// Parses the lines (one statement each), checks each statement's canonical text and round trips.
void expect_canonical(const std::vector<Line> &lines, const std::string &headers = "") {
  std::string text = kMagic + headers;
  for (const Line &l : lines)
    text += l.in + "\n";
  SCOPED_TRACE(text);
  const Trace t = parse_ok(text);
  ASSERT_EQ(t.statements.size(), lines.size());
  for (std::size_t i = 0; i < lines.size(); ++i)
    EXPECT_EQ(stmt_text(t.statements[i], t.names),
              lines[i].canonical.empty() ? lines[i].in : lines[i].canonical)
        << "input: " << lines[i].in;
  expect_round_trip(t);
}

TEST(ParserRoundTrip, InitOptions) {
  expect_canonical({{"init", "init max_stack_depth=0"}});
  expect_canonical({{"init no_init_ext direct_io_allow_mmap writeback_cache max_stack_depth=2 "
                     "passthrough => ok",
                     "init passthrough max_stack_depth=2 writeback_cache direct_io_allow_mmap "
                     "no_init_ext => ok"}});
  expect_canonical({{"init passthrough max_stack_depth=0x10", "init passthrough max_stack_depth=16"},
                    {"check conn passthrough=1 connected=1 no_open=0"}});
  expect_canonical({{"init max_stack_depth=65535"}});
}

TEST(ParserRoundTrip, BackingIoctls) {
  expect_canonical({
      // ioctls before init are allowed
      {"backing_open B0 a.dat"},
      {"backing_open B1 opath:a.dat flags=0 padding=0 => EINVAL",
       "backing_open B1 opath:a.dat => EINVAL"},
      {"backing_open B2 dir unprivileged padding=7 flags=0x10 => EPERM",
       "backing_open B2 dir flags=16 padding=7 unprivileged => EPERM"},
      {"backing_open B3 pipe => EINVAL"}, {"backing_open B4 socket => EINVAL"},
      {"backing_open B5 devnull => EINVAL"}, {"backing_open B6 badfd => EBADF"},
      {"backing_open b7.x_y-Z b-c_d.e flags=4294967295 padding=0xffffffffffffffff => id=12",
       "backing_open b7.x_y-Z b-c_d.e flags=4294967295 padding=18446744073709551615 => id=12"},
      // on=overlay goes right after the source it places
      {"backing_open B8 a.dat on=overlay => ELOOP"}, {"backing_open B9 a.dat on=overlay => id=13"},
      {"backing_open B10 opath:a.dat unprivileged flags=1 on=overlay",
       "backing_open B10 opath:a.dat on=overlay flags=1 unprivileged"},
      {"backing_open B11 dir on=overlay => EISDIR"},
      {"backing_close B0 => ok"}, {"backing_close B0 unprivileged => EPERM"},
      {"backing_close id=5 unprivileged => EPERM"},
      {"backing_close id=0xffffffff => EINVAL", "backing_close id=4294967295 => EINVAL"},
      {"backing_close id=0"}, {"dev_close => ok"}, {"check backing B0 refs=2"},
      {"check backing B1 freed"}, {"check backing b7.x_y-Z freed refs=0"},
  });
}

TEST(ParserRoundTrip, OpensAndReplies) {
  expect_canonical({
      {"init passthrough max_stack_depth=1"}, {"backing_open B1 a.dat => id=1"},
      {"open H1 a reply=cached", "open H1 a rdonly reply=cached"},
      {"open H2 a rdonly reply=passthrough@B1 => ok"},
      {"open H3 a reply=passthrough@id=-5 wronly o_trunc o_direct => EIO +release",
       "open H3 a wronly o_direct o_trunc reply=passthrough@id=-5 => EIO +release"},
      {"open H4 b rdwr reply=error:EACCES => EACCES"},
      {"open H5 b reply=enosys => ok", "open H5 b rdonly reply=enosys => ok"},
      // symbolic flags print in a fixed order; raw bits follow in ascending order
      {"open H6 b reply=bit:31|cache_dir|stream|nonseekable|parallel_direct_writes|noflush|"
       "keep_cache|direct_io|passthrough|bit:0@B1",
       "open H6 b rdonly reply=passthrough|direct_io|keep_cache|noflush|parallel_direct_writes|"
       "nonseekable|stream|cache_dir|bit:0|bit:31@B1"},
      {"open H7 b reply=cached@id=0", "open H7 b rdonly reply=cached@id=0"},
      {"open H8 b reply=direct_io@id=2147483647", "open H8 b rdonly reply=direct_io@id=2147483647"},
      {"open H9 b reply=bit:7@id=-2147483648", "open H9 b rdonly reply=bit:7@id=-2147483648"},
      {"open H10 b reply=passthrough@id=0x10", "open H10 b rdonly reply=passthrough@id=16"},
      {"open H11 b reply=error:EWOULDBLOCK => EAGAIN",
       "open H11 b rdonly reply=error:EAGAIN => EAGAIN"},
      {"open H12 b reply=direct_io => blocks", "open H12 b rdonly reply=direct_io => blocks"},
      {"await H12 => ok +release"}, {"create C1 new reply=passthrough@B1 => ok +release"},
      {"create C2 new2 reply=error:EEXIST => EEXIST"}, {"create C3 new3 reply=direct_io => blocks"},
      {"opendir D1 reply=cache_dir|keep_cache => ok", "opendir D1 reply=keep_cache|cache_dir => ok"},
      {"opendir D2 reply=error:ENOENT => ENOENT"}, {"check last internal=EINVAL"},
      {"check last internal=0"}, {"check inode a ctr=-2 fb=B1 cache_io_mode=0"},
      {"check inode b cache_io_mode=1 fb=none ctr=3"},
      {"check inode new ctr=0x2", "check inode new ctr=2"},
      {"check file H1 iomode=cached passthrough=0 released=0"},
      {"check file H2 released=1 passthrough=1 iomode=uncached"}, {"check file D1 iomode=none"},
      {"check conn no_open=1 connected=0 passthrough=0"}, {"check drained"},
  });
}

TEST(ParserRoundTrip, IoStatements) {
  expect_canonical({
      {"init passthrough max_stack_depth=1 direct_io_allow_mmap"},
      {"open H1 a rdwr reply=direct_io|parallel_direct_writes"}, {"read H1 => backing"},
      {"read H1 => fuse"}, {"read H1 => EIO"}, {"read H1"}, {"write H1 => backing"},
      {"write H1 => fuse"}, {"write H1 => blocks"}, {"write H1 => EBADF"}, {"await H1 => fuse"},
      {"mmap M1 H1 shared => ok"}, {"mmap M2 H1 private => ENODEV"},
      {"mmap M3 H1 shared => blocks"}, {"await M3 => ok"}, {"munmap M1 => ok"}, {"munmap M2"},
      {"write_begin W1 H1 => ok"}, {"write_begin W2 H1 => backing"},
      {"write_begin W3 H1 => blocks"}, {"close H1 => blocks"}, {"write_begin W4 H1 => EIO"},
      {"await W3 => backing"}, {"await W3 => EIO"}, {"write_end W1 => fuse"},
      {"write_end W3 => EIO"}, {"close H1 => ok"},
      {"abort => ok"}, {"umount detach => ok"}, {"umount => EBUSY"}, {"umount"}, {"dev_close"},
      {"check drained"},
  });
}

TEST(ParserRoundTrip, HeadersAndProfiles) {
  for (const std::string p : {"v15", "6.9", "6.18"}) {
    SCOPED_TRACE(p);
    const Trace t = parse_ok(kMagic + "kernel " + p + "\ntitle \"t " + p + "\"\ninit\n");
    EXPECT_TRUE(t.profile_given);
    EXPECT_EQ(fpsim::model::profile_name(t.profile), p);
    EXPECT_EQ(t.title, "t " + p);
    expect_round_trip(t);
  }
  const Trace none = parse_ok(kMagic + "init\n");
  EXPECT_FALSE(none.profile_given);
  EXPECT_EQ(none.profile, fpsim::model::kDefaultProfile);
  EXPECT_EQ(none.title, "");
  expect_round_trip(none);
  // Headers in either order; a trace may have no statements at all.
  const Trace only = parse_ok(kMagic + "title \"x\"\nkernel v15\n");
  EXPECT_EQ(only.profile, fpsim::model::KernelProfile::V15);
  EXPECT_TRUE(only.statements.empty());
  expect_round_trip(only);
}

// The parsed values behind the canonical text.
TEST(ParserValues, RepliesAndNames) {
  const Trace t = parse_ok(kInit + "backing_open B1 x.dat => id=1\n"
                                   "backing_open B2 opath:y.dat on=overlay\n"
                                   "open H1 a reply=passthrough|direct_io|bit:9@B2 => ok +release\n"
                                   "open H2 b wronly reply=error:ENOMEM\n"
                                   "create C1 c reply=cached@id=-5\n"
                                   "opendir D1 reply=enosys\n"
                                   "open H3 c rdwr reply=keep_cache\n"
                                   "mmap M1 H1 private\n"
                                   "write_begin W1 H3\n"
                                   "await W1\n"
                                   "await M1\n"
                                   "await H2\n"
                                   "check inode a fb=B2\n"
                                   "check inode d fb=none\n");
  const Names &n = t.names;
  EXPECT_EQ(n.backings, (std::vector<std::string>{"B1", "B2"}));
  EXPECT_EQ(n.backing_files, (std::vector<std::string>{"x.dat", "y.dat"}));
  EXPECT_EQ(n.handles, (std::vector<std::string>{"H1", "H2", "C1", "D1", "H3"}));
  EXPECT_EQ(n.mount_files, (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ(n.mount_file_created, (std::vector<bool>{false, false, true, false}));
  EXPECT_EQ(n.mappings, (std::vector<std::string>{"M1"}));
  EXPECT_EQ(n.writes, (std::vector<std::string>{"W1"}));
  ASSERT_EQ(t.statements.size(), 15u);
  const auto &s = t.statements;
  EXPECT_EQ(s[1].expect->kind, Outcome::Kind::Id);
  EXPECT_EQ(s[1].expect->id, 1);
  EXPECT_EQ(s[1].source, SourceKind::File);
  EXPECT_EQ(s[1].source_fs, SourceFs::BackingDir);
  EXPECT_EQ(s[2].source, SourceKind::OPath);
  EXPECT_EQ(s[2].backing_file, 1);
  EXPECT_EQ(s[2].source_fs, SourceFs::Overlay);
  EXPECT_EQ(s_stack_depth(s[1].source_fs), 0);
  EXPECT_EQ(s_stack_depth(s[2].source_fs), 1);

  const ReplySpec &r1 = s[3].reply;
  EXPECT_EQ(r1.kind, ReplySpec::Kind::Flags);
  EXPECT_EQ(r1.flags, reply_flag::PASSTHROUGH | reply_flag::DIRECT_IO);
  EXPECT_EQ(r1.raw_bits, 1u << 9);
  EXPECT_EQ(r1.id_kind, ReplySpec::IdKind::Name);
  EXPECT_EQ(r1.backing, 1);
  EXPECT_TRUE(s[3].expect->release);
  EXPECT_EQ(s[3].expect->kind, Outcome::Kind::Ok);
  // The profile maps passthrough to its bit; raw bits go on the wire as they are.
  EXPECT_EQ(wire_open_flags(r1, fpsim::model::KernelProfile::V6_18), (1u << 7) | 1u | (1u << 9));
  EXPECT_EQ(wire_open_flags(r1, fpsim::model::KernelProfile::V15), (1u << 8) | 1u | (1u << 9));

  EXPECT_EQ(s[4].reply.kind, ReplySpec::Kind::Error);
  EXPECT_EQ(s[4].reply.error, ENOMEM);
  EXPECT_EQ(s[4].access, AccessMode::WriteOnly);
  EXPECT_FALSE(s[4].expect.has_value());
  EXPECT_EQ(s[5].op, Op::Create);
  EXPECT_EQ(s[5].reply.id_kind, ReplySpec::IdKind::Literal);
  EXPECT_EQ(s[5].reply.literal_id, -5);
  EXPECT_EQ(s[5].reply.flags, 0u);
  EXPECT_EQ(s[6].reply.kind, ReplySpec::Kind::Enosys);
  EXPECT_EQ(s[7].access, AccessMode::ReadWrite);
  EXPECT_EQ(s[7].file, 2); // the created file's slot
  EXPECT_FALSE(s[8].shared);
  EXPECT_EQ(s[10].await_kind, NameKind::Write);
  EXPECT_EQ(s[10].await_slot, 0);
  EXPECT_EQ(s[11].await_kind, NameKind::Mapping);
  EXPECT_EQ(s[12].await_kind, NameKind::Handle);
  EXPECT_EQ(s[12].await_slot, 1);
  EXPECT_EQ(s[13].check.kind, CheckKind::Inode);
  ASSERT_EQ(s[13].check.props.size(), 1u);
  EXPECT_EQ(s[13].check.props[0], (CheckProp{CheckKey::Fb, 1}));
  EXPECT_EQ(s[14].check.props[0], (CheckProp{CheckKey::Fb, -1}));
}

TEST(ParserValues, ErrnoNames) {
  EXPECT_EQ(parse_errno("EIO"), EIO);
  EXPECT_EQ(parse_errno("EWOULDBLOCK"), EAGAIN);
  EXPECT_EQ(parse_errno("eio"), std::nullopt);
  EXPECT_EQ(parse_errno(""), std::nullopt);
  EXPECT_EQ(errno_name(EPERM), "EPERM");
  EXPECT_EQ(errno_name(0), "0");
  for (int e : {EPERM, ENOENT, EIO, EBADF, EAGAIN, ENOMEM, EACCES, EBUSY, EEXIST, EINVAL, ENODEV,
                ENOSYS, ENOTCONN, EOPNOTSUPP, ELOOP})
    EXPECT_EQ(parse_errno(errno_name(e)), e) << errno_name(e);
}

// ---------------------------------------------------------------------------------------------
// Malformed input: one test per class, each input failing at its line:col with its message
// ---------------------------------------------------------------------------------------------

struct BadInput {
  std::string text; // after the class's prefix
  int line, col;
  std::string fragment; // of the message
};
struct ErrorClass {
  const char *name;
  std::string prefix;
  std::vector<BadInput> cases;
};
void PrintTo(const ErrorClass &c, std::ostream *os) { *os << c.name; }

const ErrorClass kParserErrors[] = {
    {"MissingMagic", "", {
      {"init\n", 1, 1, "expected 'fpsim-trace 1' as the first statement"},
      {"# a comment first\n\n  init passthrough\n", 3, 3,
       "expected 'fpsim-trace 1' as the first statement"},
      {"FPSIM-TRACE 1\n", 1, 1, "expected 'fpsim-trace 1' as the first statement"},
      {"kernel 6.18\nfpsim-trace 1\n", 1, 1, "expected 'fpsim-trace 1'"},
      {"fpsim-trace\ninit\n", 1, 1, "expected 'fpsim-trace 1'"},
      {"fpsim-trace 1 1\n", 1, 1, "expected 'fpsim-trace 1'"},
      // A UTF-8 byte order mark is not whitespace.
      {"\xEF\xBB\xBF" "fpsim-trace 1\n", 1, 1, "expected 'fpsim-trace 1'"},
    }},
    {"WrongVersion", "", {
      {"fpsim-trace 2\ninit\n", 1, 13, "unsupported trace format version '2'"},
      {"fpsim-trace 1.0\n", 1, 13, "unsupported trace format version '1.0'"},
      {"  fpsim-trace   0 # old\n", 1, 17, "unsupported trace format version '0'"},
    }},
    {"UnknownStatement", "", {
      {kInit + "frobnicate H1\n", 3, 1, "unknown statement 'frobnicate'"},
      {kInit + "   Open H1 a reply=cached\n", 3, 4, "unknown statement 'Open'"},
      {kInit + "=> ok\n", 3, 1, "unknown statement '=>'"},
      {kMagic + "\"quoted\"\n", 2, 1, "unknown statement '\"quoted\"'"},
    }},
    {"UnknownName", kInit, {
      {"read H1\n", 3, 6, "unknown handle 'H1': not declared before this line"},
      // Use before declaration.
      {"close H1\nopen H1 a reply=cached\n", 3, 7, "unknown handle 'H1'"},
      {"munmap M1\n", 3, 8, "unknown mapping 'M1'"},
      {"write_end W1\n", 3, 11, "unknown write 'W1'"},
      {"backing_close B1\n", 3, 15, "unknown backing name 'B1'"},
      {"open H1 a reply=passthrough@B9\n", 3, 29, "unknown backing name 'B9'"},
      {"check inode a fb=B9\n", 3, 18, "unknown backing name 'B9'"},
      {"check backing B9 freed\n", 3, 15, "unknown backing name 'B9'"},
      {"check file H9 released=1\n", 3, 12, "unknown handle 'H9'"},
      {"await X\n", 3, 7, "unknown name 'X'"},
      {"mmap M1 H9 shared\n", 3, 9, "unknown handle 'H9'"},
      // Names are case sensitive.
      {"open H1 a reply=cached\nclose h1\n", 4, 7, "unknown handle 'h1'"},
    }},
    {"WrongNameKind", kInit, {
      {"backing_open B1 a.dat\nread B1\n", 4, 6, "'B1' is a backing name, not a handle"},
      {"open H1 a reply=cached\nmmap M1 H1 shared\nclose M1\n", 5, 7,
       "'M1' is a mapping, not a handle"},
      {"open H1 a reply=cached\nbacking_close H1\n", 4, 15, "'H1' is a handle, not a backing name"},
      {"open H1 a reply=cached\nopen H2 a reply=passthrough@H1\n", 4, 29,
       "'H1' is a handle, not a backing name"},
      {"open H1 a reply=cached\nwrite_begin W1 H1\nmunmap W1\n", 5, 8,
       "'W1' is a write, not a mapping"},
      {"backing_open B1 a.dat\nawait B1\n", 4, 7,
       "'B1' is a backing name: only opens, reads, writes and mmaps block"},
    }},
    {"DuplicateName", kInit, {
      {"open H1 a reply=cached\nopen H1 b reply=cached\n", 4, 6,
       "duplicate handle 'H1': already declared at line 3"},
      {"backing_open B1 a.dat\n# comment\nbacking_open B1 b.dat\n", 5, 14,
       "duplicate backing name 'B1': already declared at line 3"},
      // One namespace for every kind of name.
      {"backing_open X a.dat\ncreate X b reply=cached\n", 4, 8,
       "duplicate handle 'X': already declared at line 3"},
      {"open H1 a reply=cached\nmmap M1 H1 shared\nmmap M1 H1 private\n", 5, 6,
       "duplicate mapping 'M1'"},
      {"open H1 a reply=cached\nwrite_begin W1 H1\nwrite_begin W1 H1\n", 5, 13,
       "duplicate write 'W1'"},
      {"opendir D1 reply=cached\nopendir D1 reply=cached\n", 4, 9, "duplicate handle 'D1'"},
    }},
    {"SecondInit", kInit, {
      {"init\n", 3, 1, "a second 'init': a connection answers INIT once"},
      {"open H1 a reply=cached\n  init passthrough\n", 4, 3, "a second 'init'"},
    }},
    {"HeaderAfterStatement", "", {
      {kInit + "kernel 6.9\n", 3, 1, "'kernel' is a header: headers come right after"},
      {kMagic + "backing_open B1 a.dat\ntitle \"late\"\n", 3, 1, "'title' is a header"},
      {kInit + "fpsim-trace 1\n", 3, 1, "'fpsim-trace' is a header"},
      {kMagic + "fpsim-trace 1\n", 2, 1, "'fpsim-trace' is a header"},
      {kMagic + "kernel 6.9\nkernel 6.18\n", 3, 1, "a second 'kernel' header"},
      {kMagic + "title \"a\"\ntitle \"b\"\n", 3, 1, "a second 'title' header"},
    }},
    {"UnknownKernelProfile", kMagic, {
      {"kernel 7.0\n", 2, 8, "unknown kernel profile '7.0'"},
      {"kernel V15\n", 2, 8, "unknown kernel profile 'V15'"},
      {"title \"x\"\n\tkernel\t6.10\n", 3, 9, "unknown kernel profile '6.10'"},
      {"kernel\n", 2, 1, "expected 'kernel PROFILE'"},
      {"kernel 6.9 6.18\n", 2, 1, "expected 'kernel PROFILE'"},
    }},
    {"PathAsFileName", kInit, {
      {"open H1 a/b reply=cached\n", 3, 9,
       "'a/b' is a path: a file name is a plain name in the directory"},
      {"open H1 .. reply=cached\n", 3, 9, "'..' is a path"},
      {"open H1 . reply=cached\n", 3, 9, "'.' is a path"},
      {"create C1 /x reply=cached\n", 3, 11, "'/x' is a path"},
      {"backing_open B1 ../a.dat\n", 3, 17, "'../a.dat' is a path"},
      {"backing_open B1 opath:/etc/passwd\n", 3, 23, "'/etc/passwd' is a path"},
      {"backing_open B1 opath:\n", 3, 23, "invalid file name ''"},
      {"check inode d/e ctr=0\n", 3, 13, "'d/e' is a path"},
    }},
    {"UnknownOption", "", {
      {kMagic + "init bogus\n", 2, 6, "unknown init option 'bogus'"},
      {kMagic + "init Passthrough\n", 2, 6, "unknown init option 'Passthrough'"},
      {kInit + "open H1 a sync reply=cached\n", 3, 11, "unknown open option 'sync'"},
      {kInit + "open H1 a rdwr reply=cached o_creat\n", 3, 29, "unknown open option 'o_creat'"},
      {kInit + "backing_open B1 a.dat privileged\n", 3, 23,
       "unknown backing_open option 'privileged'"},
      {kInit + "backing_open B1 a.dat on=ext4\n", 3, 23,
       "on: unknown filesystem 'ext4' (expected 'overlay')"},
      {kInit + "backing_open B1 a.dat on=\n", 3, 23, "on: unknown filesystem ''"},
      {kInit + "backing_open B1 a.dat on\n", 3, 23, "unknown backing_open option 'on'"},
      {kInit + "backing_open B1 pipe on=overlay\n", 3, 22,
       "on=overlay places a backing file or dir, not 'pipe'"},
      {kInit + "backing_open B1 socket on=overlay\n", 3, 24, "not 'socket'"},
      {kInit + "backing_open B1 devnull on=overlay\n", 3, 25, "not 'devnull'"},
      {kInit + "backing_open B1 badfd on=overlay\n", 3, 23, "not 'badfd'"},
      {kInit + "umount lazy\n", 3, 8, "unknown umount option 'lazy' (expected 'detach')"},
      {kInit + "open H1 a reply=cached\nmmap M1 H1 both\n", 4, 12,
       "expected 'shared' or 'private', got 'both'"},
      {kInit + "open H1 a reply=cached\nread H1 H1\n", 4, 9, "unexpected 'H1' after read"},
      {kInit + "abort now\n", 3, 7, "unexpected 'now' after abort"},
      {kInit + "umount detach detach\n", 3, 15, "unexpected 'detach' after umount"},
      {kInit + "backing_open B1 a.dat\nbacking_close B1 unprivileged unprivileged\n", 4, 31,
       "unexpected 'unprivileged' after backing_close"},
      {kInit + "create C1 a reply=cached rdwr\n", 3, 26, "unexpected 'rdwr' after create"},
      {kInit + "create C1 a rdwr reply=cached\n", 3, 13, "expected reply=R, got 'rdwr'"},
    }},
    {"MissingArgument", kInit, {
      {"open\n", 3, 5, "open: missing a handle name"},
      {"open H1\n", 3, 8, "open: missing a file name"},
      {"open H1 a\n", 3, 1, "open: missing reply=R (how the server answers OPEN)"},
      {"open H1 a rdwr o_direct => ok\n", 3, 1, "open: missing reply=R"},
      {"create C1 a\n", 3, 12, "create: missing reply=R"},
      {"opendir D1 => ok\n", 3, 11, "opendir: missing reply=R"},
      {"open H1 a reply=cached\nmmap M1 H1\n", 4, 11, "mmap: missing shared or private"},
      {"backing_open B1\n", 3, 16, "backing_open: missing a backing file or source"},
      {"backing_close\n", 3, 14, "backing_close: missing a backing name or id=N"},
      {"await\n", 3, 6, "await: missing the name of a blocked statement"},
      {"check\n", 3, 6, "check: missing what to check"},
      {"check inode\n", 3, 12, "check: missing a file name"},
    }},
    {"OptionGivenTwice", "", {
      {kMagic + "init passthrough passthrough\n", 2, 18, "option 'passthrough' given twice"},
      {kMagic + "init max_stack_depth=1 max_stack_depth=2\n", 2, 24,
       "option 'max_stack_depth' given twice"},
      {kMagic + "init no_init_ext writeback_cache no_init_ext\n", 2, 34,
       "option 'no_init_ext' given twice"},
      {kInit + "open H1 a rdonly rdwr reply=cached\n", 3, 18, "option 'access mode' given twice"},
      {kInit + "open H1 a reply=cached reply=passthrough\n", 3, 24, "option 'reply' given twice"},
      {kInit + "open H1 a o_direct o_direct reply=cached\n", 3, 20,
       "option 'o_direct' given twice"},
      {kInit + "backing_open B1 a.dat flags=0 flags=1\n", 3, 31, "option 'flags' given twice"},
      {kInit + "backing_open B1 a.dat unprivileged unprivileged\n", 3, 36,
       "option 'unprivileged' given twice"},
      {kInit + "backing_open B1 a.dat on=overlay on=overlay\n", 3, 34, "option 'on' given twice"},
      {kInit + "check inode a ctr=0 ctr=1\n", 3, 21, "check inode: property given twice"},
    }},
    {"BadNumber", "", {
      {kMagic + "init max_stack_depth=x\n", 2, 6, "max_stack_depth: 'x' is not a valid number"},
      {kMagic + "init max_stack_depth=\n", 2, 6, "max_stack_depth: '' is not a valid number"},
      {kMagic + "init max_stack_depth=-1\n", 2, 6, "max_stack_depth: out of range 0..65535"},
      {kMagic + "init max_stack_depth=65536\n", 2, 6, "out of range 0..65535"},
      {kInit + "backing_open B1 a.dat flags=1z\n", 3, 23, "flags: '1z' is not a valid number"},
      {kInit + "backing_open B1 a.dat flags=4294967296\n", 3, 23,
       "flags: '4294967296' is not a valid number"},
      {kInit + "backing_open B1 a.dat flags=0x\n", 3, 23, "flags: '0x' is not a valid number"},
      {kInit + "backing_open B1 a.dat flags=+1\n", 3, 23, "flags: '+1' is not a valid number"},
      {kInit + "backing_open B1 a.dat padding=-1\n", 3, 23, "padding: '-1' is not a valid number"},
      {kInit + "backing_close id=-1\n", 3, 15, "id: '-1' is not a valid number"},
      {kInit + "backing_close id=4294967296\n", 3, 15, "id: '4294967296' is not a valid"},
      {kInit + "backing_open B1 a.dat => id=x\n", 3, 26, "id: 'x' is not a valid number"},
      {kInit + "check inode a ctr=1.5\n", 3, 15, "ctr: '1.5' is not a valid number"},
      {kInit + "backing_open B1 a.dat\ncheck backing B1 refs=\n", 4, 18,
       "refs: '' is not a valid number"},
    }},
    {"UnknownReplyFlag", kInit, {
      {"open H1 a reply=cached|bogus\n", 3, 24, "unknown reply flag 'bogus'"},
      {"open H1 a reply=Passthrough\n", 3, 17, "unknown reply flag 'Passthrough'"},
      {"open H1 a reply=\n", 3, 17, "unknown reply flag ''"},
      {"open H1 a reply=passthrough|\n", 3, 29, "unknown reply flag ''"},
      {"open H1 a reply=direct_io||keep_cache\n", 3, 27, "unknown reply flag ''"},
      {"backing_open B1 a.dat\nopen H1 a reply=@B1\n", 4, 17, "unknown reply flag ''"},
      {"opendir D1 reply=cache-dir\n", 3, 18, "unknown reply flag 'cache-dir'"},
      {"create C1 a reply=fuse\n", 3, 19, "unknown reply flag 'fuse'"},
    }},
    {"ReplyBitOutOfRange", kInit, {
      {"open H1 a reply=bit:32\n", 3, 17, "reply flag 'bit:32': bit must be 0..31"},
      {"open H1 a reply=direct_io|bit:-1\n", 3, 27, "reply flag 'bit:-1': bit must be 0..31"},
      {"open H1 a reply=bit:\n", 3, 17, "reply flag 'bit:': bit must be 0..31"},
      {"open H1 a reply=bit:x\n", 3, 17, "reply flag 'bit:x'"},
    }},
    {"ReplyIdNotInt32", kInit, {
      {"open H1 a reply=passthrough@id=99999999999\n", 3, 29,
       "backing id '99999999999' is not a 32-bit integer"},
      {"open H1 a reply=passthrough@id=2147483648\n", 3, 29,
       "backing id '2147483648' is not a 32-bit integer"},
      {"open H1 a reply=passthrough@id=-2147483649\n", 3, 29, "backing id '-2147483649'"},
      {"open H1 a reply=passthrough@id=\n", 3, 29, "backing id '' is not"},
      {"open H1 a reply=passthrough@id=one\n", 3, 29, "backing id 'one' is not"},
    }},
    {"UnknownErrno", kInit, {
      // in a reply
      {"open H1 a reply=error:EFOO\n", 3, 23, "unknown errno 'EFOO'"},
      {"open H1 a reply=error:eio\n", 3, 23, "unknown errno 'eio'"},
      {"open H1 a reply=error:\n", 3, 23, "unknown errno ''"},
      {"opendir D1 reply=error:5\n", 3, 24, "unknown errno '5'"},
      // in an expectation
      {"open H1 a reply=cached => EFOO\n", 3, 27, "unknown errno 'EFOO'"},
      {"open H1 a reply=cached => eio\n", 3, 27,
       "unknown expectation 'eio' (expected ok, an errno, id=N, backing, fuse or blocks)"},
      // in a check
      {"check last internal=EFOO\n", 3, 21, "unknown errno 'EFOO'"},
      {"check last internal=\n", 3, 21, "unknown errno ''"},
    }},
    {"UnknownObservation", kInit, {
      {"open H1 a reply=cached => ok +relase\n", 3, 30,
       "unknown observation '+relase' (expected +release)"},
      {"open H1 a reply=cached => ok EIO\n", 3, 30, "unknown observation 'EIO'"},
      {"open H1 a reply=cached => ok => ok\n", 3, 30, "unknown observation '=>'"},
      {"open H1 a reply=cached => release\n", 3, 27, "unknown expectation 'release'"},
    }},
    {"ArrowWithoutExpectation", kInit, {
      {"open H1 a reply=cached =>\n", 3, 26, "'=>' without an expectation"},
      {"open H1 a reply=cached =>   # nothing\n", 3, 26, "'=>' without an expectation"},
      {"abort =>\n", 3, 9, "'=>' without an expectation"},
      {"check drained =>\n", 3, 17, "'=>' without an expectation"},
    }},
    {"CheckWithExpectation", kInit, {
      {"check drained => ok\n", 3, 15,
       "a check has no expectation: it passes or reports a violation"},
      {"check conn connected=1 => ok\n", 3, 24, "a check has no expectation"},
    }},
    {"BadCheck", kInit, {
      {"check bogus\n", 3, 7,
       "unknown check 'bogus' (expected inode, backing, file, conn, last or drained)"},
      {"check inode a bogus=1\n", 3, 15, "unknown check property 'bogus=1'"},
      {"check conn Passthrough=1\n", 3, 12, "unknown check property 'Passthrough=1'"},
      // Properties that exist, on the wrong kind of check.
      {"check inode a refs=1\n", 3, 15, "check inode: 'refs=1' does not apply"},
      {"check conn ctr=0\n", 3, 12, "check conn: 'ctr=0' does not apply"},
      {"check drained ctr=0\n", 3, 15, "check drained: 'ctr=0' does not apply"},
      {"check last passthrough=1\n", 3, 12, "check last: 'passthrough=1' does not apply"},
      {"open H1 a reply=cached\ncheck file H1 freed\n", 4, 15,
       "check file: 'freed' does not apply"},
      {"backing_open B1 a.dat\ncheck backing B1 fb=none\n", 4, 18,
       "check backing: 'fb=none' does not apply"},
      // Bad values and empty checks.
      {"check conn passthrough=2\n", 3, 12, "'passthrough=2': expected 0 or 1"},
      {"check inode a cache_io_mode=yes\n", 3, 15, "'cache_io_mode=yes': expected 0 or 1"},
      {"open H1 a reply=cached\ncheck file H1 iomode=direct\n", 4, 15,
       "'iomode=direct': iomode is none, cached or uncached"},
      {"check inode a\n", 3, 7, "check inode: nothing to check"},
      {"check conn\n", 3, 7, "check conn: nothing to check"},
      {"check last\n", 3, 7, "check last: nothing to check"},
    }},
    {"CreateEnosys", kInit, {
      {"create C1 a reply=enosys\n", 3, 19, "create: reply=enosys is not supported"},
      {"create C1 a reply=enosys => ENOSYS\n", 3, 19, "MKNOD+OPEN"},
    }},
};

TEST(ParserErrors, EmptyFile) {
  expect_error("", 1, 1, "empty trace");
  expect_error("# only a comment", 1, 1, "empty trace");
  // Blank lines and comments only: the message; the line it names is the end of the file.
  ParseResult r = parse_trace("\n# c\n\n", "e.trace");
  auto *e = std::get_if<ParseError>(&r);
  ASSERT_NE(e, nullptr);
  EXPECT_NE(e->message.find("empty trace"), std::string::npos);
  EXPECT_EQ(e->col, 1);
  // Just the magic line is a valid, empty trace.
  EXPECT_TRUE(parse_ok("fpsim-trace 1").statements.empty());
  EXPECT_TRUE(parse_ok("fpsim-trace 1\n").statements.empty());
}

TEST(ParserErrors, FileStatementBeforeInit) {
  const std::vector<std::string> stmts = {
      "open H1 a reply=cached", "create H1 a reply=cached", "opendir H1 reply=cached",
      "read H1",                "write H1",                 "mmap M1 H1 shared",
      "munmap M1",              "close H1",                 "write_begin W1 H1",
      "write_end W1",           "await H1",                 "abort",
      "umount",                 "umount detach"};
  for (const auto &s : stmts) {
    const std::string op = s.substr(0, s.find(' '));
    expect_error(kMagic + "backing_open B1 a.dat\n" + s + "\ninit\n", 3, 1,
                 "'" + op + "' before 'init'");
  }
  expect_error(kMagic + "# ...\n  read H1\n", 3, 3, "'read' before 'init'");
  // ioctls, dev_close and checks may come before init.
  const Trace t = parse_ok(kMagic + "backing_open B1 a.dat => id=1\nbacking_close B1 => ok\n"
                                    "backing_close id=3 => EINVAL\ncheck conn connected=1\n"
                                    "dev_close => ok\ninit\n");
  EXPECT_EQ(t.statements.size(), 6u);
}

TEST(ParserErrors, BadTitle) {
  const std::string msg = "expected 'title \"...\"'";
  expect_error(kMagic + "title unquoted\n", 2, 1, msg);
  expect_error(kMagic + "title two words\n", 2, 1, msg);
  expect_error(kMagic + "title\n", 2, 1, msg);
  expect_error(kMagic + "title \"unterminated\n", 2, 1, msg);
  expect_error(kMagic + "title \"a\" \"b\"\n", 2, 1, msg);
  expect_error(kMagic + "title \"a\"b\"\n", 2, 1, msg);
  expect_error(kMagic + "title \"\n", 2, 1, msg);
  expect_error(kMagic + "kernel 6.9\n  title 'single'\n", 3, 3, msg);
}

TEST(ParserErrors, InvalidName) {
  const std::string n64 = "H" + std::string(63, 'x');
  const std::string n65 = "H" + std::string(64, 'x');
  // 64 characters is the limit.
  const Trace t = parse_ok(kInit + "open " + n64 + " a reply=cached\nclose " + n64 + "\n");
  EXPECT_EQ(t.names.handles.at(0), n64);
  expect_error(kInit + "open " + n65 + " a reply=cached\n", 3, 6, "invalid handle '" + n65 + "'");
  expect_error(kInit + "open 1H a reply=cached\n", 3, 6,
               "invalid handle '1H': names match [A-Za-z][A-Za-z0-9_.-]{0,63}");
  expect_error(kInit + "open _H a reply=cached\n", 3, 6, "invalid handle '_H'");
  expect_error(kInit + "open H$ a reply=cached\n", 3, 6, "invalid handle 'H$'");
  expect_error(kInit + "backing_open B:1 a.dat\n", 3, 14, "invalid backing name 'B:1'");
  expect_error(kInit + "open H1 a reply=cached\nmmap -M H1 shared\n", 4, 6, "invalid mapping '-M'");
  expect_error(kInit + "open H1 a reply=cached\nwrite_begin W@ H1\n", 4, 13, "invalid write 'W@'");
  expect_error(kInit + "open H1 \xC3\xA9t\xC3\xA9 reply=cached\n", 3, 9, "invalid file name");
  expect_error(kInit + "open H1 " + n65 + " reply=cached\n", 3, 9, "invalid file name");
  expect_error(kInit + "backing_open B1 9.dat\n", 3, 17, "invalid file name '9.dat'");
  expect_error(kInit + "open H1 a reply=cached@\n", 3, 24, "invalid backing name ''");
}

TEST(ParserErrors, CachedCombinedWithFlags) {
  const std::string msg = "reply flag 'cached' means no flags: it cannot be combined with others";
  expect_error(kInit + "open H1 a reply=cached|direct_io\n", 3, 17, msg);
  expect_error(kInit + "open H1 a reply=bit:3|cached\n", 3, 17, msg);
  expect_error(kInit + "opendir D1 reply=keep_cache|cached@id=1\n", 3, 18, msg);
}

TEST(ParserErrors, ExpectationDoesNotFitTheOp) {
  const std::string pre = kInit + "open H1 a rdwr reply=cached\n";
  expect_error(pre + "read H1 => id=1\n", 4, 12, "'id=1' is not an outcome read can have");
  expect_error(kInit + "open H1 a reply=cached => backing\n", 3, 27,
               "'backing' is not an outcome open can have");
  expect_error(pre + "read H1 => ok\n", 4, 12, "'ok' is not an outcome read can have");
  expect_error(pre + "write H1 => ok\n", 4, 13, "'ok' is not an outcome write can have");
  expect_error(pre + "write_begin W1 H1\nwrite_end W1 => ok\n", 5, 17,
               "'ok' is not an outcome write_end can have");
  expect_error(pre + "write_begin W1 H1\nwrite_end W1 => backing\n", 5, 17,
               "'backing' is not an outcome write_end can have");
  expect_error(pre + "write_begin W1 H1 => id=1\n", 4, 22,
               "'id=1' is not an outcome write_begin can have");
  expect_error(pre + "mmap M1 H1 shared => fuse\n", 4, 22, "'fuse' is not an outcome mmap can have");
  expect_error(pre + "close H1 => fuse\n", 4, 13, "'fuse' is not an outcome close can have");
  expect_error(kInit + "opendir D1 reply=cached => blocks\n", 3, 28,
               "'blocks' is not an outcome opendir can have");
  expect_error(kInit + "create C1 a reply=cached => id=1\n", 3, 29,
               "'id=1' is not an outcome create can have");
  expect_error(kInit + "backing_open B1 a.dat => backing\n", 3, 26,
               "'backing' is not an outcome backing_open can have");
  expect_error(kInit + "umount => fuse\n", 3, 11, "'fuse' is not an outcome umount can have");
}

TEST(ParserErrors, ReleaseOnlyOnOpens) {
  const std::string pre = kInit + "open H1 a rdwr reply=cached\n";
  expect_error(pre + "read H1 => EIO +release\n", 4, 16,
               "+release applies to open and create, not read");
  expect_error(pre + "close H1 => ok +release\n", 4, 16, "+release applies to open and create");
  expect_error(kInit + "opendir D1 reply=cached => ok +release\n", 3, 31,
               "+release applies to open and create, not opendir");
  expect_error(kInit + "backing_open B1 a.dat => id=1 +release\n", 3, 31,
               "+release applies to open and create, not backing_open");
  expect_error(kInit + "open H1 a reply=cached => ok +release +release\n", 3, 39,
               "+release given twice");
}

TEST(ParserErrors, InvalidUtf8) {
  expect_error(kInit + "open H1 a reply=cached # caf\xE9\n", 3, 29, "invalid UTF-8");
  expect_error("fpsim-trace 1 \xFF\n", 1, 15, "invalid UTF-8");
  expect_error(kMagic + "title \"\x80\"\n", 2, 8, "invalid UTF-8");
  // A multi-byte sequence cut short by the end of the line.
  expect_error(kInit + "# \xE2\x82\n", 3, 3, "invalid UTF-8");
  expect_error(kInit + "# \xF0\x9F\x98\n", 3, 3, "invalid UTF-8");
  // The check runs before anything else on the line, comments included.
  expect_error(kInit + "frobnicate # \xC3\n", 3, 14, "invalid UTF-8");
  // Valid multi-byte text in comments and titles is fine.
  const Trace t = parse_ok(kMagic + "title \"d\xC3\xA9j\xC3\xA0 vu \xE2\x9C\x93 \xF0\x9F\x98\x80\"\n"
                                    "init # \xE2\x80\x94 caf\xC3\xA9\n");
  EXPECT_EQ(t.title, "d\xC3\xA9j\xC3\xA0 vu \xE2\x9C\x93 \xF0\x9F\x98\x80");
  EXPECT_EQ(t.statements.size(), 1u);
}

// ---------------------------------------------------------------------------------------------
// Lexical details
// ---------------------------------------------------------------------------------------------

TEST(ParserLexical, TabsAndCrlfAccepted) {
  const std::string text = "fpsim-trace 1\r\n"
                           "kernel\t6.9\r\n"
                           "title \"crlf\ttitle\"\r\n"
                           "\tinit\tpassthrough  max_stack_depth=1\r\n"
                           "open\tH1 a\treply=cached\t=>\tok\t\r\n"
                           "read H1\r\n"
                           "\r\n"
                           "check inode a ctr=1 # comment\r\n"
                           "close H1 => ok\r\n";
  const Trace t = parse_ok(text);
  EXPECT_EQ(t.profile, fpsim::model::KernelProfile::V6_9);
  EXPECT_EQ(t.title, "crlf\ttitle");
  ASSERT_EQ(t.statements.size(), 5u);
  EXPECT_EQ(t.statements[0].line, 4);
  EXPECT_EQ(t.statements[0].col, 2);
  EXPECT_TRUE(t.statements[0].init.passthrough);
  EXPECT_EQ(t.statements[0].init.max_stack_depth, 1);
  EXPECT_EQ(t.statements[1].line, 5);
  EXPECT_EQ(t.statements[1].col, 1);
  ASSERT_TRUE(t.statements[1].expect.has_value());
  EXPECT_EQ(t.statements[1].expect->kind, Outcome::Kind::Ok);
  EXPECT_FALSE(t.statements[2].expect.has_value());
  EXPECT_EQ(t.names.handles, (std::vector<std::string>{"H1"}));
  EXPECT_EQ(t.names.mount_files, (std::vector<std::string>{"a"}));
  EXPECT_EQ(t.statements[3].line, 8);
  EXPECT_EQ(t.statements[4].line, 9);
  expect_round_trip(t);
  // A CRLF file without a final newline, and a lone CR as whitespace.
  const Trace u = parse_ok("fpsim-trace 1\r\ninit\rpassthrough\r\nabort => ok");
  ASSERT_EQ(u.statements.size(), 2u);
  EXPECT_TRUE(u.statements[0].init.passthrough);
  EXPECT_EQ(u.statements[1].line, 3);
  // Columns count a tab as one column (byte offsets).
  expect_error("fpsim-trace 1\r\ninit\r\n\tread\tX\r\n", 3, 7, "unknown handle 'X'");
  expect_error("fpsim-trace 1\r\ninit\r\nopen H1 a reply=bogus\r\n", 3, 17,
               "unknown reply flag 'bogus'");
}

TEST(ParserLexical, CommentsAndBlankLinesIgnored) {
  const std::string text = "# leading comment\n"
                           "\n"
                           "fpsim-trace 1   # magic with a comment\n"
                           "   \n"
                           "# between headers\n"
                           "kernel v15 # v15\n"
                           "\t\n"
                           "title \"issue #42: a # b\" # a real comment\n"
                           "init passthrough # => EIO in a comment is not an expectation\n"
                           "#open H9 a reply=cached\n"
                           "     # indented comment\n"
                           "open H1 a reply=cached# glued comment\n"
                           "read H1 => fuse#glued\n"
                           "\n"
                           "  close   H1   =>   ok   \n"
                           "check drained\n"
                           "# trailing comment";
  const Trace t = parse_ok(text);
  EXPECT_EQ(t.profile, fpsim::model::KernelProfile::V15);
  EXPECT_TRUE(t.profile_given);
  EXPECT_EQ(t.title, "issue #42: a # b");
  EXPECT_EQ(t.names.handles, (std::vector<std::string>{"H1"}));
  ASSERT_EQ(t.statements.size(), 5u);
  const auto &s = t.statements;
  EXPECT_EQ(s[0].op, Op::Init);
  EXPECT_FALSE(s[0].expect.has_value());
  EXPECT_EQ(s[1].op, Op::Open);
  EXPECT_FALSE(s[1].expect.has_value());
  EXPECT_EQ(s[2].op, Op::Read);
  ASSERT_TRUE(s[2].expect.has_value());
  EXPECT_EQ(s[2].expect->kind, Outcome::Kind::Fuse);
  EXPECT_EQ(s[3].op, Op::Close);
  ASSERT_TRUE(s[3].expect.has_value());
  EXPECT_EQ(s[3].expect->kind, Outcome::Kind::Ok);
  EXPECT_EQ(s[4].op, Op::Check);
  // line and col of each statement
  const std::vector<std::pair<int, int>> where = {{9, 1}, {12, 1}, {13, 1}, {15, 3}, {16, 1}};
  for (std::size_t i = 0; i < where.size(); ++i) {
    EXPECT_EQ(s[i].line, where[i].first) << i;
    EXPECT_EQ(s[i].col, where[i].second) << i;
  }
  // The source is kept line by line for --annotate.
  ASSERT_GE(t.source_lines.size(), 17u);
  EXPECT_EQ(t.source_lines[0], "# leading comment");
  EXPECT_EQ(t.source_lines[14], "  close   H1   =>   ok   ");
  expect_round_trip(t);
  // A title that is only a '#' and a header comment right after the quote.
  const Trace u = parse_ok(kMagic + "title \"#\"# c\ninit\n");
  EXPECT_EQ(u.title, "#");
  // An error after comments and blank lines names the right line.
  expect_error("# 1\n\nfpsim-trace 1\n# 4\n\ninit\n   # 7\n\n    frobnicate # 9\n", 9, 5,
               "unknown statement 'frobnicate'");
}

TEST(ParserLexical, StatementPositionsForAnnotate) {
  const Trace t = parse_ok(kInit + "open H1 a reply=cached   => ok  # note\n"
                                   "read H1 # c\n"
                                   "close H1\n"
                                   "  check drained\t# done\n"
                                   "abort\t=> ok\n");
  ASSERT_EQ(t.statements.size(), 6u);
  const auto &s = t.statements;
  EXPECT_EQ(s[1].text_end, 22u); // "open H1 a reply=cached"
  EXPECT_EQ(s[1].comment_pos, std::optional<std::size_t>(32));
  EXPECT_EQ(s[2].text_end, 7u); // "read H1"
  EXPECT_EQ(s[2].comment_pos, std::optional<std::size_t>(8));
  EXPECT_EQ(s[3].text_end, 8u); // "close H1"
  EXPECT_EQ(s[3].comment_pos, std::nullopt);
  EXPECT_EQ(s[4].text_end, 15u); // "  check drained"
  EXPECT_EQ(s[4].comment_pos, std::optional<std::size_t>(16));
  EXPECT_EQ(s[4].col, 3);
  EXPECT_EQ(s[5].text_end, 5u); // "abort"
  for (const Statement &st : s)
    EXPECT_EQ(st.col, st.op == Op::Check ? 3 : 1);
}

TEST(ParserLexical, ParseErrorFormat) {
  ParseResult r = parse_trace("fpsim-trace 1\nbogus\n", "dir/x.trace");
  auto *e = std::get_if<ParseError>(&r);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->str(), "dir/x.trace:2:1: unknown statement 'bogus'");
  // An unreadable file is a ParseError at line 0: "path: message".
  ParseResult m = load_trace("/nonexistent/fpsim/none.trace");
  auto *me = std::get_if<ParseError>(&m);
  ASSERT_NE(me, nullptr);
  EXPECT_EQ(me->line, 0);
  EXPECT_EQ(me->str().rfind("/nonexistent/fpsim/none.trace: cannot open: ", 0), 0u) << me->str();
}

TEST(ParserLexical, FirstErrorWins) {
  // Nothing after the first error matters; the error is on the first bad line.
  expect_error(kInit + "read X\nfrobnicate\n", 3, 6, "unknown handle 'X'");
  expect_error(kInit + "open H1 a reply=bogus => EFOO\n", 3, 17, "unknown reply flag 'bogus'");
}

// ---------------------------------------------------------------------------------------------
// Regressions: parser bugs these tests found, fixed since.
// ---------------------------------------------------------------------------------------------

const ErrorClass kParserFixedBugs[] = {
    // Once a bug: the duplicate-title check tested t.title.empty(), so an empty first title let a
    // second one through.
    {"SecondTitleAfterEmptyTitle", kMagic, {
      {"title \"\"\ntitle \"x\"\n", 3, 1, "a second 'title' header"},
    }},
    // Once a bug: overlong forms, UTF-16 surrogates and code points above U+10FFFF were accepted.
    {"RejectsNonCanonicalUtf8", kInit, {
      {"# \xC0\xAF\n", 3, 3, "invalid UTF-8"},         // overlong '/'
      {"# \xE0\x80\xAF\n", 3, 3, "invalid UTF-8"},     // overlong '/'
      {"# \xED\xA0\x80\n", 3, 3, "invalid UTF-8"},     // U+D800
      {"# \xF4\x90\x80\x80\n", 3, 3, "invalid UTF-8"}, // U+110000
      {"# \xF5\x80\x80\x80\n", 3, 3, "invalid UTF-8"},
    }},
};

class Malformed : public testing::TestWithParam<ErrorClass> {};
TEST_P(Malformed, FailsAtItsLineAndColumnWithItsMessage) {
  for (const BadInput &b : GetParam().cases)
    expect_error(GetParam().prefix + b.text, b.line, b.col, b.fragment);
}
std::string class_name(const testing::TestParamInfo<ErrorClass> &i) { return i.param.name; }
INSTANTIATE_TEST_SUITE_P(ParserErrors, Malformed, testing::ValuesIn(kParserErrors), class_name);
INSTANTIATE_TEST_SUITE_P(ParserFixedBugs, Malformed, testing::ValuesIn(kParserFixedBugs),
                         class_name);

// Once a bug: text_end kept the '\r' of a CRLF line, so --annotate wrote a CR mid-line.
TEST(ParserFixedBugs, TextEndExcludesCarriageReturn) {
  const Trace t = parse_ok("fpsim-trace 1\r\ninit\r\nabort\r\n");
  ASSERT_EQ(t.statements.size(), 2u);
  EXPECT_EQ(t.statements[0].text_end, 4u);
  EXPECT_EQ(t.statements[1].text_end, 5u);
}

// Once a bug: only EWOULDBLOCK of glibc's errno aliases was accepted.
TEST(ParserFixedBugs, ErrnoAliases) {
  EXPECT_EQ(parse_errno("EDEADLOCK"), EDEADLK);
  EXPECT_EQ(parse_errno("ENOTSUP"), EOPNOTSUPP);
}

} // namespace
