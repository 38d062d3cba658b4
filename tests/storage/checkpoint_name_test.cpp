// Checkpoint names without a database: which rows belong to a projection (its own checkpoint,
// or in distributed mode one lane per worker).
#include <gtest/gtest.h>

#include "prefstore/storage/checkpoints.hpp"

namespace prefstore::storage {
namespace {

TEST(CheckpointName, AProjectionOwnsItsCheckpointAndItsLanes) {
  EXPECT_TRUE(is_checkpoint_of("preference_value_counts", "preference_value_counts"));
  EXPECT_TRUE(is_checkpoint_of("preference_value_counts__node1", "preference_value_counts"));
  EXPECT_TRUE(is_checkpoint_of("preference_value_counts__node12", "preference_value_counts"));
}

TEST(CheckpointName, OtherNamesAreNotItsCheckpoints) {
  // Another projection whose name starts with this one's.
  EXPECT_FALSE(is_checkpoint_of("snapshots_weekly", "snapshots"));
  EXPECT_FALSE(is_checkpoint_of("snapshots_weekly__node1", "snapshots"));
  // A rebuild's scratch checkpoint, a lane without a group, a group that is not a number.
  EXPECT_FALSE(is_checkpoint_of("snapshots__rebuild", "snapshots"));
  EXPECT_FALSE(is_checkpoint_of("snapshots__node", "snapshots"));
  EXPECT_FALSE(is_checkpoint_of("snapshots__nodex", "snapshots"));
  EXPECT_FALSE(is_checkpoint_of("snap", "snapshots"));
  EXPECT_FALSE(is_checkpoint_of("", "snapshots"));
}

}  // namespace
}  // namespace prefstore::storage
