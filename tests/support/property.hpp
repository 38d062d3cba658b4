// Test support: run a rapidcheck property as the current gtest test with a run count of its own,
// so the default suite stays fast; RC_PARAMS (max_success, max_size, seed, reproduce) still
// overrides it, and a failing seed prints a reproduce string to keep as a regression test.
#pragma once

#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <chrono>
#include <iostream>
#include <sstream>
#include <string>
#include <utility>

namespace prefstore::testing {

// Checks `property` with `runs` successful cases and sizes up to `max_size`, unless RC_PARAMS
// sets max_success / max_size. Prints rapidcheck's summary; a failure fails the gtest test.
template <class Property>
void check_property(Property&& property, int runs, int max_size) {
  rc::detail::TestParams params = rc::detail::configuration().testParams;
  const rc::detail::TestParams defaults;
  if (params.maxSuccess == defaults.maxSuccess) params.maxSuccess = runs;
  if (params.maxSize == defaults.maxSize) params.maxSize = max_size;
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  rc::detail::TestMetadata metadata;
  metadata.id = std::string(info->test_suite_name()) + "/" + info->name();
  metadata.description = info->name();
  const auto started = std::chrono::steady_clock::now();
  const auto result = rc::detail::checkTestable(std::forward<Property>(property), metadata, params);
  const auto seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::ostringstream message;
  rc::detail::printResultMessage(result, message);
  const bool passed = result.template is<rc::detail::SuccessResult>();
  std::cout << "[ rapidcheck ] " << metadata.id << " (" << params.maxSuccess << " runs, max size "
            << params.maxSize << ", " << seconds
            << " s): " << (passed ? message.str() : std::string("FAILED, counterexample below"))
            << std::endl;
  if (!passed) ADD_FAILURE() << message.str();
}

}  // namespace prefstore::testing
