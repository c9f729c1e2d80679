#include "model/decision.h"

#include "base/assert.h"

namespace fpsim::model {

std::string_view rule_name(Rule r) {
  switch (r) {
#define FPSIM_RULE_NAME(name, function)                                                            \
  case Rule::name:                                                                                 \
    return #name;
    FPSIM_RULES(FPSIM_RULE_NAME)
#undef FPSIM_RULE_NAME
  }
  FPSIM_UNREACHABLE("a Rule outside the enum");
}

std::string_view rule_function(Rule r) {
  switch (r) {
#define FPSIM_RULE_FUNCTION(name, function)                                                        \
  case Rule::name:                                                                                 \
    return function;
    FPSIM_RULES(FPSIM_RULE_FUNCTION)
#undef FPSIM_RULE_FUNCTION
  }
  FPSIM_UNREACHABLE("a Rule outside the enum");
}

std::optional<Rule> parse_rule(std::string_view name) {
  for (std::size_t i = 0; i < kRuleCount; ++i)
    if (rule_name(static_cast<Rule>(i)) == name)
      return static_cast<Rule>(i);
  return std::nullopt;
}

} // namespace fpsim::model
