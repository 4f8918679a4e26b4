// Command-line parsing: each flag lands in its field, memcached's refusals, -o suboptions.
#include "server/settings.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <vector>

using namespace mcm::server;

namespace {

ParseOutcome parse(std::initializer_list<const char*> args, Settings* s) {
    std::vector<std::string> store = {"memcached"};
    for (const char* a : args) store.emplace_back(a);
    std::vector<char*> argv;
    for (std::string& a : store) argv.push_back(a.data());
    argv.push_back(nullptr);
    testing::internal::CaptureStderr();
    testing::internal::CaptureStdout();
    ParseOutcome r = parse_command_line(static_cast<int>(store.size()), argv.data(), s);
    testing::internal::GetCapturedStdout();
    testing::internal::GetCapturedStderr();
    return r;
}

}  // namespace

TEST(Settings, Defaults) {
    Settings s;
    ASSERT_EQ(parse({}, &s), ParseOutcome::Run);
    EXPECT_EQ(s.port, 11211);
    EXPECT_EQ(s.max_bytes, 64u << 20);
    EXPECT_EQ(s.max_conns, 1024);
    EXPECT_EQ(s.num_threads, 4);
    EXPECT_EQ(s.reqs_per_event, 20);
    EXPECT_EQ(s.item_size_max, 1u << 20);
    EXPECT_TRUE(s.use_cas);
    EXPECT_TRUE(s.evict_to_free);
}

TEST(Settings, EveryFlag) {
    Settings s;
    ASSERT_EQ(
        parse(
            {"-p",    "1234",     "-s", "/tmp/x.sock", "-a", "770",    "-A", "-l",  "127.0.0.1,::1",
             "-l",    "10.0.0.1", "-d", "-r",          "-u", "nobody", "-m", "128", "-M",
             "-c",    "99",       "-k", "-vv",         "-P", "/tmp/p", "-f", "1.5", "-n",
             "64",    "-t",       "3",  "-R",          "7",  "-C",     "-b", "55",  "-B",
             "ascii", "-I",       "2m", "-F",          "-D", "#"},
            &s),
        ParseOutcome::Run);
    EXPECT_EQ(s.port, 1234);
    EXPECT_EQ(s.socket_path, "/tmp/x.sock");
    EXPECT_EQ(s.access_mask, 0770);
    EXPECT_TRUE(s.shutdown_enabled);
    EXPECT_EQ(s.listen, (std::vector<std::string>{"127.0.0.1", "::1", "10.0.0.1"}));
    EXPECT_TRUE(s.daemonize);
    EXPECT_TRUE(s.maxcore);
    EXPECT_EQ(s.username, "nobody");
    EXPECT_EQ(s.max_bytes, 128u << 20);
    EXPECT_FALSE(s.evict_to_free);
    EXPECT_EQ(s.max_conns, 99);
    EXPECT_TRUE(s.lock_memory);
    EXPECT_EQ(s.verbose, 2);
    EXPECT_EQ(s.pid_file, "/tmp/p");
    EXPECT_DOUBLE_EQ(s.factor, 1.5);
    EXPECT_EQ(s.chunk_size, 64);
    EXPECT_EQ(s.num_threads, 3);
    EXPECT_EQ(s.reqs_per_event, 7);
    EXPECT_FALSE(s.use_cas);
    EXPECT_EQ(s.backlog, 55);
    EXPECT_EQ(s.binding_protocol, Protocol::Ascii);
    EXPECT_EQ(s.item_size_max, 2u << 20);
    EXPECT_FALSE(s.flush_enabled);
    EXPECT_EQ(s.prefix_delimiter, '#');
    EXPECT_TRUE(s.detail_enabled);
}

TEST(Settings, LongOptions) {
    Settings s;
    ASSERT_EQ(parse({"--port=99", "--threads=2", "--memory-limit=10", "--max-item-size=1m",
                     "--disable-cas", "--enable-shutdown"},
                    &s),
              ParseOutcome::Run);
    EXPECT_EQ(s.port, 99);
    EXPECT_EQ(s.num_threads, 2);
    EXPECT_EQ(s.max_bytes, 10u << 20);
    EXPECT_FALSE(s.use_cas);
    EXPECT_TRUE(s.shutdown_enabled);
}

TEST(Settings, ItemSizeSuffixes) {
    Settings s;
    ASSERT_EQ(parse({"-I", "1024k"}, &s), ParseOutcome::Run);
    EXPECT_EQ(s.item_size_max, 1u << 20);
    Settings t;
    ASSERT_EQ(parse({"-m", "4096", "-I", "1048576"}, &t), ParseOutcome::Run);
    EXPECT_EQ(t.item_size_max, 1u << 20);
}

TEST(Settings, Suboptions) {
    Settings s;
    ASSERT_EQ(parse({"-o",
                     "hashpower=20,no_lru_crawler,no_maxconns_fast,modern,slab_reassign,"
                     "hash_algorithm=murmur3"},
                    &s),
              ParseOutcome::Run);
    EXPECT_EQ(s.hashpower_init, 20u);
    EXPECT_FALSE(s.lru_crawler);
    EXPECT_FALSE(s.maxconns_fast);
}

TEST(Settings, Refusals) {
    for (auto args : std::vector<std::vector<const char*>>{{"-t", "0"},
                                                           {"-R", "0"},
                                                           {"-c", "0"},
                                                           {"-f", "1"},
                                                           {"-n", "0"},
                                                           {"-B", "x"},
                                                           {"-I", "1k"},
                                                           {"-m", "1"},
                                                           {"-I", "2g"},
                                                           {"-S"},
                                                           {"-Z"},
                                                           {"-U", "11211"},
                                                           {"-B", "binary"},
                                                           {"-o", "bogus"},
                                                           {"-o", "hashpower=5"},
                                                           {"-o", "hashpower=40"},
                                                           {"-o", "ext_path=/x"},
                                                           {"-o", "ssl_key=/x"},
                                                           {"-o", "idle_timeout=5"},
                                                           {"--bogus"},
                                                           {"extra-arg"}}) {
        std::vector<std::string> store = {"memcached"};
        for (const char* a : args) store.emplace_back(a);
        std::vector<char*> argv;
        for (std::string& a : store) argv.push_back(a.data());
        argv.push_back(nullptr);
        Settings s;
        testing::internal::CaptureStderr();
        ParseOutcome r = parse_command_line(static_cast<int>(store.size()), argv.data(), &s);
        std::string err = testing::internal::GetCapturedStderr();
        EXPECT_EQ(r, ParseOutcome::ExitError) << store[1];
        EXPECT_FALSE(err.empty()) << store[1];
    }
}

TEST(Settings, HelpAndVersion) {
    Settings s;
    EXPECT_EQ(parse({"-h"}, &s), ParseOutcome::ExitOk);
    EXPECT_EQ(parse({"-V"}, &s), ParseOutcome::ExitOk);
    std::string u = usage_text();
    for (const char* opt : {"-p, --port",
                            "-U, --udp-port",
                            "-s, --unix-socket",
                            "-a, --unix-mask",
                            "-l, --listen",
                            "-d, --daemon",
                            "-u, --user",
                            "-P, --pidfile",
                            "-m, --memory-limit",
                            "-M, --disable-evictions",
                            "-c, --conn-limit",
                            "-t, --threads",
                            "-R, --max-reqs-per-event",
                            "-C, --disable-cas",
                            "-B, --protocol",
                            "-I, --max-item-size",
                            "-v, --verbose",
                            "-h, --help",
                            "-V, --version",
                            "-A, --enable-shutdown",
                            "-r, --enable-coredumps",
                            "-o, --extended"}) {
        EXPECT_NE(u.find(opt), std::string::npos) << opt;
    }
    EXPECT_NE(u.find("unix-socket"), std::string::npos);
}
