// sim/exec/live.h: what a trace holds, followed from outcomes alone, and the one teardown built on it.
#include "sim/exec/live.h"
#include "sim/trace/parser.h"

#include <gtest/gtest.h>

using namespace fpsim;
using namespace fpsim::sim;

namespace {

Trace parse(const std::string &text) {
  ParseResult p = parse_trace(text, "inline.trace");
  if (auto *e = std::get_if<ParseError>(&p))
    ADD_FAILURE() << e->str();
  return std::get<Trace>(std::move(p));
}

Outcome kind(Outcome::Kind k) {
  Outcome o;
  o.kind = k;
  return o;
}

Outcome id(std::int64_t n) {
  Outcome o = kind(Outcome::Kind::Id);
  o.id = n;
  return o;
}

std::vector<int> slots(const SlotSet &s) {
  std::vector<int> v;
  s.for_each([&v](int slot) { v.push_back(slot); });
  return v;
}

TEST(SlotSet, AscendingAcrossTheInlineWordAndBeyond) {
  SlotSet s;
  for (int slot : {200, 3, 64, 0, 63, 3})
    s.insert(slot);
  EXPECT_EQ(s.size(), 5);
  EXPECT_EQ(slots(s), (std::vector<int>{0, 3, 63, 64, 200}));
  const SlotSet copy = s;
  s.erase(64);
  s.erase(65); // not there: nothing happens
  EXPECT_FALSE(s.contains(64));
  EXPECT_TRUE(copy.contains(64));
  EXPECT_EQ(s.size(), 4);
  EXPECT_EQ(s.low_bits(), (1ull << 0) | (1ull << 3) | (1ull << 63));
}

// A write and a handle with the same slot are different names: the write's await returning
// must not forget that the handle's blocked call is an open.
TEST(Live, AwaitOfOneKindLeavesTheOtherKindsAlone) {
  const Trace t = parse("fpsim-trace 1\n"
                        "init\n"
                        "open H1 a reply=cached\n"
                        "write_begin W1 H1\n"
                        "await W1\n"
                        "await H1\n");
  Live live(t.names);
  live.track(t.statements[0], Outcome::ok());
  live.track(t.statements[1], kind(Outcome::Kind::Blocks));
  live.track(t.statements[2], kind(Outcome::Kind::Blocks));
  EXPECT_TRUE(live.blocked_open(0));
  live.track(t.statements[3], Outcome::ok());
  EXPECT_EQ(slots(live.writes()), std::vector<int>{0});
  EXPECT_TRUE(live.blocked_open(0));
  live.track(t.statements[4], Outcome::ok());
  EXPECT_EQ(slots(live.handles()), std::vector<int>{0});
  EXPECT_FALSE(live.any_blocked());
}

// A read that blocks on an open handle gives no fd when it returns; a close while it sleeps
// leaves the handle closed.
TEST(Live, AReadReturningOpensNothing) {
  const Trace t = parse("fpsim-trace 1\n"
                        "init\n"
                        "open H1 a reply=cached\n"
                        "read H1\n"
                        "close H1\n"
                        "await H1\n");
  Live live(t.names);
  live.track(t.statements[0], Outcome::ok());
  live.track(t.statements[1], Outcome::ok());
  live.track(t.statements[2], kind(Outcome::Kind::Blocks));
  EXPECT_FALSE(live.blocked_open(0));
  live.track(t.statements[3], Outcome::ok());
  live.track(t.statements[4], kind(Outcome::Kind::Fuse));
  EXPECT_TRUE(live.handles().empty());
  EXPECT_FALSE(live.any_blocked());
}

// Closing an id unregisters every name bound to it; the bindings keep the id.
TEST(Live, ClosingAnIdUnregistersEveryNameBoundToIt) {
  const Trace t = parse("fpsim-trace 1\n"
                        "init passthrough max_stack_depth=1\n"
                        "backing_open B1 x\n"
                        "backing_open B2 y\n"
                        "backing_open B3 x\n"
                        "backing_close id=1\n");
  Live live(t.names);
  live.track(t.statements[0], Outcome::ok());
  live.track(t.statements[1], id(1));
  live.track(t.statements[2], id(1)); // a broken idr: handed out twice
  live.track(t.statements[3], id(2));
  EXPECT_EQ(live.registered_ids(), (std::vector<std::int32_t>{1, 2}));
  live.track(t.statements[4], Outcome::ok());
  EXPECT_EQ(slots(live.registered()), std::vector<int>{2});
  EXPECT_EQ(live.registered_ids(), std::vector<std::int32_t>{2});
  EXPECT_EQ(live.bindings().backing_ids[0], 1);
  EXPECT_EQ(live.declared(NameKind::Backing), 3);
}

// Closing ids one by one, in order and out of it, through the index's compactions.
TEST(Live, ManyIdsCloseInAnyOrder) {
  constexpr int kNames = 1000;
  Names n;
  n.number(kNames);
  Live live(n);
  Statement open;
  open.op = Op::BackingOpen;
  for (int i = 0; i < kNames; ++i) {
    open.backing = i;
    live.track(open, id(i + 1));
  }
  Statement close;
  close.op = Op::BackingClose;
  for (int i = kNames - 1; i >= 0; i -= 2) { // the odd ids, from the top
    close.literal_id = static_cast<std::uint32_t>(i + 1);
    live.track(close, Outcome::ok());
  }
  EXPECT_EQ(live.registered().size(), kNames / 2);
  const std::vector<std::int32_t> left = live.registered_ids();
  ASSERT_EQ(left.size(), static_cast<std::size_t>(kNames / 2));
  EXPECT_EQ(left.front(), 1);
  EXPECT_EQ(left.back(), kNames - 1);
  for (std::int32_t x : left) {
    close.literal_id = static_cast<std::uint32_t>(x);
    live.track(close, Outcome::ok());
  }
  EXPECT_TRUE(live.registered().empty());
  EXPECT_TRUE(live.registered_ids().empty());
}

// The teardown's statements in order, against a scripted executor: held writes, mappings and
// fds go first; a blocked open that returns hands back its fd, closed before the next await;
// then ids, umount (detached when busy) and the device.
TEST(Teardown, KernelOrder) {
  const Trace t = parse("fpsim-trace 1\n"
                        "init passthrough max_stack_depth=1\n"
                        "backing_open B1 x\n"
                        "open H1 a reply=cached\n"
                        "open H2 a reply=cached\n"
                        "mmap M1 H1 shared\n"
                        "write_begin W1 H1\n"
                        "open H3 a reply=cached\n");
  Live live(t.names);
  const std::vector<Outcome> outcomes = {Outcome::ok(), id(7), Outcome::ok(), Outcome::ok(),
                                         Outcome::ok(), Outcome::ok(), kind(Outcome::Kind::Blocks)};
  for (std::size_t i = 0; i < t.statements.size(); ++i)
    live.track(t.statements[i], outcomes[i]);
  std::vector<std::string> ran;
  std::vector<std::string> failed;
  auto name = [](const Statement &s) {
    std::string n(op_name(s.op));
    for (int slot : {s.handle, s.mapping, s.write, s.await_slot})
      if (slot >= 0)
        n += " " + std::to_string(slot);
    if (s.literal_id)
      n += " id=" + std::to_string(*s.literal_id);
    if (s.detach)
      n += " detach";
    return n;
  };
  teardown(live, TeardownRun{[&](const Statement &s) {
                               ran.push_back(name(s));
                               const Outcome o = s.op == Op::Umount && !s.detach
                                                     ? Outcome::errno_(EBUSY)
                                                     : Outcome::ok();
                               live.track(s, o);
                               return o;
                             },
                             [&](const Statement &s, const Outcome &) { failed.push_back(name(s)); }});
  EXPECT_EQ(ran, (std::vector<std::string>{"write_end 0", "munmap 0", "close 0", "close 1",
                                           "await 2", "close 2", "backing_close id=7", "umount",
                                           "umount detach", "dev_close"}));
  EXPECT_TRUE(failed.empty());
}

} // namespace
