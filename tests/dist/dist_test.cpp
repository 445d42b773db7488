// The dist module: torchrun variables, sharding, and a real two-rank Gloo group (two threads
// of this process on the loopback address) for every collective aefx uses.
#include "aefx/dist/dist.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <torch/torch.h>

#include <functional>
#include <future>
#include <thread>

#include "aefx/dist/parallel.h"
#include "test_util.h"

namespace aefx::dist {
namespace {

TEST(DistEnv, AloneWithoutVariablesAndEveryVariableIsChecked) {
  EXPECT_FALSE(env_from({}).enabled);
  const Env e = env_from({{"RANK", "3"},
                          {"WORLD_SIZE", "4"},
                          {"LOCAL_RANK", "1"},
                          {"LOCAL_WORLD_SIZE", "2"},
                          {"MASTER_ADDR", "10.0.0.1"},
                          {"MASTER_PORT", "29501"}});
  EXPECT_TRUE(e.enabled);
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.world_size, 4);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.local_world_size, 2);
  EXPECT_EQ(e.master_addr, "10.0.0.1");
  EXPECT_EQ(e.master_port, 29501);
  // torchrun's defaults for the optional ones.
  const Env d = env_from({{"RANK", "0"}, {"WORLD_SIZE", "1"}});
  EXPECT_EQ(d.master_addr, "127.0.0.1");
  EXPECT_EQ(d.master_port, 29500);
  EXPECT_EQ(d.local_world_size, 1);

  // Under torchrun's agent, every rank is a client of the agent's store.
  const Env t = env_from({{"RANK", "0"},
                          {"WORLD_SIZE", "2"},
                          {"LOCAL_RANK", "1"},
                          {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                          {"TORCHELASTIC_RESTART_COUNT", "3"}});
  EXPECT_TRUE(t.agent_store);
  EXPECT_EQ(t.restart_count, 3);
  EXPECT_EQ(t.local_rank, 1);  // without LOCAL_WORLD_SIZE, bounded by the world size
  auto message = [](const std::map<std::string, std::string>& vars) {
    try {
      env_from(vars);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({{"RANK", "0"}}).find("WORLD_SIZE is not set"), std::string::npos);
  EXPECT_NE(message({{"WORLD_SIZE", "2"}}).find("RANK is not set"), std::string::npos);
  EXPECT_NE(message({{"RANK", "2"}, {"WORLD_SIZE", "2"}}).find("RANK='2'"), std::string::npos);
  EXPECT_NE(message({{"RANK", "x"}, {"WORLD_SIZE", "2"}}).find("RANK='x'"), std::string::npos);
  EXPECT_NE(message({{"RANK", "0"}, {"WORLD_SIZE", "0"}}).find("WORLD_SIZE='0'"),
            std::string::npos);
  EXPECT_NE(message({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}})
                .find("MASTER_PORT='70000'"),
            std::string::npos);
  EXPECT_NE(message({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", ""}}).find("MASTER_ADDR"),
            std::string::npos);
}

TEST(DistGroup, TheSingleProcessIsRankZeroOfOneAndItsCollectivesChangeNothing) {
  Group g;
  EXPECT_EQ(g.rank(), 0);
  EXPECT_EQ(g.size(), 1);
  EXPECT_TRUE(g.is_main());
  EXPECT_EQ(g.backend(), "none");
  auto a = torch::tensor({1.5, -2.0}), b = a.clone();
  g.all_reduce({a}, /*average=*/true);
  g.broadcast({a});
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_EQ(g.sum(2.5), 2.5);
  EXPECT_EQ(g.agree(15, true), (std::pair<int, bool>{15, true}));
  EXPECT_EQ(g.from_main("plan"), "plan");
  auto full = torch::zeros({2});
  g.gather_shards(a, full);
  EXPECT_TRUE(torch::equal(full, a));
  g.check_same(1.0, "a value");
  g.check_same(std::vector<torch::Tensor>{a}, "tensors");
  g.barrier("nothing");
  EXPECT_TRUE(decided_by_main(g, true));
  EXPECT_EQ(local_batch_size("pretrain.batch_size", 7, g), 7);
  // Rows computed in shards are the rows computed at once.
  int calls = 0;
  auto rows = sharded_rows(
      g, 3,
      [&](int64_t begin, int64_t n) {
        ++calls;
        EXPECT_EQ(begin, 0);
        return torch::arange(n).reshape({n, 1});
      },
      "test");
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(rows.size(0), 3);
}

TEST(DistSampler, RanksTakeDisjointSlicesOfTheSameGlobalBatches) {
  Group alone;
  EpochSampler one(12, 4, "pretrain.batch_size", 7, "pretrain", alone, torch::kCPU);
  EXPECT_EQ(one.steps_per_epoch(), 3);
  EXPECT_TRUE(torch::equal(one.indices(1, 2),
                           epoch_order(12, 7, "pretrain", 1, torch::kCPU).narrow(0, 8, 4)));
  EXPECT_FALSE(torch::equal(one.indices(0, 0), one.indices(1, 0)));
}

TEST(DistShard, ContiguousCoversAllAndDiffersByAtMostOne) {
  for (int64_t n : {0, 1, 5, 10, 45000}) {
    for (int world : {1, 2, 3, 7}) {
      int64_t next = 0;
      for (int r = 0; r < world; ++r) {
        const auto [b, e] = shard(n, r, world);
        EXPECT_EQ(b, next);
        EXPECT_GE(e - b, n / world);
        EXPECT_LE(e - b, n / world + 1);
        next = e;
      }
      EXPECT_EQ(next, n);
    }
  }
  EXPECT_EQ(rank_seed(7, 0), 7u);
  EXPECT_NE(rank_seed(7, 1), rank_seed(7, 2));
}

/// Runs `body(group)` on two ranks (threads) of one Gloo group on the loopback address.
void on_two_ranks(const std::function<void(Group&)>& body, double timeout_s = 20) {
  if (!has_gloo()) GTEST_SKIP() << "built without Gloo";
  const int port = free_port();
  auto rank = [&](int r) {
    Env env;
    env.enabled = true;
    env.rank = r;
    env.world_size = 2;
    env.master_port = port;
    Group g(env, config::Backend::kGloo, torch::kCPU,
            std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
    body(g);
  };
  auto other = std::async(std::launch::async, rank, 1);
  rank(0);
  other.get();
}

TEST(DistGroup, AllReduceBroadcastGatherAndStoreOnTwoRanks) {
  on_two_ranks([](Group& g) {
    EXPECT_EQ(g.size(), 2);
    EXPECT_EQ(g.backend(), "gloo");
    const double r = g.rank();
    // Mixed shapes, a channels-last tensor and a second dtype, in buckets of 64 bytes.
    auto a = torch::full({3, 5}, r + 1);
    auto b = torch::full({2, 3, 4, 4}, 10 * (r + 1)).contiguous(torch::MemoryFormat::ChannelsLast);
    auto c = torch::full({4}, 2.0 * (r + 1), torch::kDouble);
    g.all_reduce({a, b, c}, true, 64);
    EXPECT_TRUE(torch::allclose(a, torch::full({3, 5}, 1.5)));
    EXPECT_TRUE(torch::allclose(b, torch::full({2, 3, 4, 4}, 15.0)));
    EXPECT_TRUE(b.is_contiguous(torch::MemoryFormat::ChannelsLast));
    EXPECT_TRUE(torch::allclose(c, torch::full({4}, 3.0, torch::kDouble)));
    // Gradients are averaged; a parameter without one is left alone.
    auto p = torch::zeros({2}, torch::requires_grad());
    (p * (r + 1) * 4).sum().backward();
    auto q = torch::zeros({2}, torch::requires_grad());
    g.average_gradients({p, q});
    EXPECT_TRUE(torch::allclose(p.grad(), torch::full({2}, 6.0)));
    EXPECT_FALSE(q.grad().defined());
    EXPECT_DOUBLE_EQ(g.sum(r + 0.25), 1.5);
    // Rank 0's values everywhere.
    auto w = torch::full({5}, r);
    g.broadcast({w});
    EXPECT_TRUE(torch::equal(w, torch::zeros({5})));
    // Shards of 7 rows (4 + 3) gathered into a slice of a bigger tensor.
    const auto [begin, end] = shard(7, g.rank(), 2);
    auto local = torch::arange(begin, end, torch::kFloat).view({-1, 1}).repeat({1, 3});
    auto full = torch::full({9, 3}, -1.0f);
    g.gather_shards(local, full.narrow(0, 1, 7));
    EXPECT_TRUE(torch::equal(full.narrow(0, 1, 7),
                             torch::arange(7, torch::kFloat).view({-1, 1}).repeat({1, 3})));
    EXPECT_EQ(full[0][0].item<float>(), -1.0f);
    EXPECT_EQ(full[8][0].item<float>(), -1.0f);
    // bf16 rows (classify's code cache) arrive bit for bit.
    auto local16 = (local / 3.0 + 0.001).to(torch::kBFloat16);
    auto full16 = torch::zeros({7, 3}, torch::kBFloat16);
    g.gather_shards(local16, full16);
    EXPECT_TRUE(torch::equal(
        full16, (torch::arange(7, torch::kFloat).view({-1, 1}).repeat({1, 3}) / 3.0 + 0.001)
                    .to(torch::kBFloat16)));
    EXPECT_EQ(g.from_main(g.is_main() ? "plan from rank 0" : "ignored"), "plan from rank 0");
    // One rank has a signal, the other a NaN: both learn of both.
    const auto [signal, bad] = g.agree(g.rank() == 1 ? SIGINT : 0, g.rank() == 0);
    EXPECT_EQ(signal, SIGINT);
    EXPECT_TRUE(bad);
    EXPECT_EQ(g.agree(0, false), std::make_pair(0, false));
    g.check_same(42.0, "a constant");
    g.barrier("the end of the test");
  });
}

TEST(DistGroup, FileFromMainAndDisagreementsAreNamed) {
  testing::TempDir dir;
  const auto file = dir / "weights.bin";
  testing::write_bytes(file, std::string("\0\1binary\n", 9));
  on_two_ranks([&](Group& g) {
    // Rank 1 reads rank 0's file without touching the file system.
    EXPECT_EQ(g.file_from_main(g.is_main() ? file.string() : "/nonexistent"),
              std::string("\0\1binary\n", 9));
    // A file rank 0 lacks: rank 0 gets the usual message, rank 1 one naming rank 0.
    try {
      g.file_from_main((dir / "missing.pt").string(), "pretrain");
      ADD_FAILURE() << "no error on rank " << g.rank();
    } catch (const std::runtime_error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("missing.pt"), std::string::npos) << what;
      EXPECT_NE(what.find(g.is_main() ? "'pretrain' stage" : "rank 0 could not read"),
                std::string::npos)
          << what;
    }
    try {
      g.check_same(g.rank() == 0 ? 1.0 : 2.0, "the trained weights");
      ADD_FAILURE() << "no error on rank " << g.rank();
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("the ranks disagree on the trained weights (rank 0: "
                                           "1, rank 1: 2)"),
                std::string::npos)
          << e.what();
    }
  });
}

TEST(DistGroup, ARankThatNeverComesIsReportedWithinTheTimeout) {
  if (!has_gloo()) GTEST_SKIP() << "built without Gloo";
  Env env;
  env.enabled = true;
  env.rank = 1;
  env.world_size = 2;
  env.master_port = free_port();  // nobody serves it
  const auto t0 = std::chrono::steady_clock::now();
  try {
    Group g(env, config::Backend::kGloo, torch::kCPU, std::chrono::milliseconds(2000));
    FAIL() << "joined a group without rank 0";
  } catch (const PeerFailure& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("rank 1 of 2: cannot form the group through the store at 127.0.0.1:"),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("distributed.timeout = 2 s"), std::string::npos) << what;
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(15));
}

TEST(DistGroup, BackendsAreCheckedBeforeConnecting) {
  Env env;
  env.enabled = true;
  try {
    Group g(env, config::Backend::kNccl, torch::kCPU, std::chrono::milliseconds(1000));
    FAIL() << "nccl on the CPU was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("nccl needs a CUDA device"), std::string::npos);
  }
}

}  // namespace
}  // namespace aefx::dist
