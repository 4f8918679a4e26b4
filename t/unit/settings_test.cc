// The command line: every memcached 1.6.18 flag and -o suboption lands in its Settings field, the
// validation memcached does (with its messages), refusals by name for what this server does not
// offer, -h/-V, and the help text. Output is captured, so a run prints nothing.
#include "server/settings.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

namespace mcm::server {
namespace {

struct Result {
    ParseOutcome outcome;
    std::string out;  // stdout
    std::string err;  // stderr
};

Result parse(const std::vector<std::string>& args, Settings* s) {
    std::vector<std::string> store = {"memcached"};
    store.insert(store.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : store) argv.push_back(a.data());
    argv.push_back(nullptr);
    testing::internal::CaptureStdout();
    testing::internal::CaptureStderr();
    ParseOutcome r = parse_command_line(static_cast<int>(store.size()), argv.data(), s);
    Result res{r, "", ""};
    res.out = testing::internal::GetCapturedStdout();
    res.err = testing::internal::GetCapturedStderr();
    return res;
}

Settings parsed(const std::vector<std::string>& args) {
    Settings s;
    Result r = parse(args, &s);
    EXPECT_EQ(r.outcome, ParseOutcome::Run) << r.err;
    return s;
}

std::string joined(const std::vector<std::string>& args) {
    std::string j;
    for (const std::string& a : args) j += a + " ";
    return j;
}

TEST(Settings, DefaultsAreMemcached) {
    Settings s;
    Result r = parse({}, &s);
    ASSERT_EQ(r.outcome, ParseOutcome::Run);
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err, "");
    EXPECT_EQ(s.port, 11211);
    EXPECT_EQ(s.udp_port, 0);
    EXPECT_EQ(s.socket_path, "");
    EXPECT_EQ(s.access_mask, 0700);
    EXPECT_TRUE(s.listen.empty());
    EXPECT_EQ(s.backlog, 1024);
    EXPECT_EQ(s.max_conns, 1024);
    EXPECT_EQ(s.max_bytes, 64u << 20);
    EXPECT_TRUE(s.evict_to_free);
    EXPECT_EQ(s.item_size_max, 1u << 20);
    EXPECT_DOUBLE_EQ(s.factor, 1.25);
    EXPECT_EQ(s.chunk_size, 48);
    EXPECT_EQ(s.num_threads, 4);
    EXPECT_EQ(s.reqs_per_event, 20);
    EXPECT_TRUE(s.use_cas);
    EXPECT_EQ(s.binding_protocol, Protocol::Auto);
    EXPECT_EQ(s.verbose, 0);
    EXPECT_EQ(s.slab_chunk_max, 524288u);  // the effective value once parsed
    EXPECT_EQ(s.hash_algorithm, "murmur3");
    EXPECT_TRUE(s.hash_algorithm_default);
    EXPECT_TRUE(s.maxconns_fast);
    EXPECT_TRUE(s.lru_crawler);
    EXPECT_TRUE(s.dump_enabled);
    EXPECT_TRUE(s.watch_enabled);
}

TEST(Settings, EveryShortFlag) {
    Settings s = parsed({"-p",  "1234", "-U",        "0",  "-s", "/tmp/x.sock", "-a",     "770",
                         "-A",  "-l",   "127.0.0.1", "-d", "-r", "-u",          "nobody", "-m",
                         "128", "-M",   "-c",        "99", "-k", "-v",          "-P",     "/tmp/p",
                         "-f",  "1.5",  "-n",        "64", "-D",          "#",      "-t",
                         "3",   "-R",   "7",         "-C", "-b", "55",          "-B",     "ascii",
                         "-I",  "2m",   "-F",        "-X", "-W", "-o",          "modern"});
    EXPECT_EQ(s.port, 1234);
    EXPECT_EQ(s.udp_port, 0);
    EXPECT_EQ(s.socket_path, "/tmp/x.sock");
    EXPECT_EQ(s.access_mask, 0770);
    EXPECT_TRUE(s.shutdown_enabled);
    EXPECT_EQ(s.listen, std::vector<std::string>{"127.0.0.1"});
    EXPECT_TRUE(s.daemonize);
    EXPECT_TRUE(s.maxcore);
    EXPECT_EQ(s.username, "nobody");
    EXPECT_EQ(s.max_bytes, 128u << 20);
    EXPECT_FALSE(s.evict_to_free);
    EXPECT_EQ(s.max_conns, 99);
    EXPECT_TRUE(s.lock_memory);
    EXPECT_EQ(s.verbose, 1);
    EXPECT_EQ(s.pid_file, "/tmp/p");
    EXPECT_DOUBLE_EQ(s.factor, 1.5);
    EXPECT_EQ(s.chunk_size, 64);
    EXPECT_EQ(s.prefix_delimiter, '#');
    EXPECT_TRUE(s.detail_enabled);
    EXPECT_EQ(s.num_threads, 3);
    EXPECT_EQ(s.reqs_per_event, 7);
    EXPECT_FALSE(s.use_cas);
    EXPECT_EQ(s.backlog, 55);
    EXPECT_EQ(s.binding_protocol, Protocol::Ascii);
    EXPECT_EQ(s.item_size_max, 2u << 20);
    EXPECT_FALSE(s.flush_enabled);
    EXPECT_FALSE(s.dump_enabled);
    EXPECT_FALSE(s.watch_enabled);
    EXPECT_TRUE(s.modern);
}

TEST(Settings, EveryLongOption) {
    Settings s = parsed({"--port=1234",
                         "--udp-port=0",
                         "--unix-socket=/tmp/y.sock",
                         "--unix-mask=755",
                         "--enable-shutdown",
                         "--listen=::1",
                         "--daemon",
                         "--enable-coredumps",
                         "--user=daemon",
                         "--memory-limit=256",
                         "--disable-evictions",
                         "--conn-limit=77",
                         "--lock-memory",
                         "--verbose",
                         "--pidfile=/tmp/q",
                         "--slab-growth-factor=2",
                         "--slab-min-size=96",
                         "--threads=2",
                         "--max-reqs-per-event=5",
                         "--disable-cas",
                         "--listen-backlog=10",
                         "--protocol=auto",
                         "--max-item-size=4m",
                         "--disable-flush-all",
                         "--disable-dumping",
                         "--disable-watch",
                         "--extended=no_lru_crawler"});
    EXPECT_EQ(s.port, 1234);
    EXPECT_EQ(s.socket_path, "/tmp/y.sock");
    EXPECT_EQ(s.access_mask, 0755);
    EXPECT_TRUE(s.shutdown_enabled);
    EXPECT_EQ(s.listen, std::vector<std::string>{"::1"});
    EXPECT_TRUE(s.daemonize);
    EXPECT_TRUE(s.maxcore);
    EXPECT_EQ(s.username, "daemon");
    EXPECT_EQ(s.max_bytes, 256u << 20);
    EXPECT_FALSE(s.evict_to_free);
    EXPECT_EQ(s.max_conns, 77);
    EXPECT_TRUE(s.lock_memory);
    EXPECT_EQ(s.verbose, 1);
    EXPECT_EQ(s.pid_file, "/tmp/q");
    EXPECT_DOUBLE_EQ(s.factor, 2.0);
    EXPECT_EQ(s.chunk_size, 96);
    EXPECT_EQ(s.num_threads, 2);
    EXPECT_EQ(s.reqs_per_event, 5);
    EXPECT_FALSE(s.use_cas);
    EXPECT_EQ(s.backlog, 10);
    EXPECT_EQ(s.binding_protocol, Protocol::Auto);
    EXPECT_EQ(s.item_size_max, 4u << 20);
    EXPECT_FALSE(s.flush_enabled);
    EXPECT_FALSE(s.dump_enabled);
    EXPECT_FALSE(s.watch_enabled);
    EXPECT_FALSE(s.lru_crawler);
}

TEST(Settings, LongOptionsTakeASeparateValueAndUniquePrefixes) {
    Settings s = parsed({"--port", "99", "--threads", "6", "--conn=10"});
    EXPECT_EQ(s.port, 99);
    EXPECT_EQ(s.num_threads, 6);
    EXPECT_EQ(s.max_conns, 10);
    // as with memcached, a prefix of two long names is ambiguous
    Settings t;
    Result r = parse({"--mem=10"}, &t);
    EXPECT_EQ(r.outcome, ParseOutcome::ExitError);
    EXPECT_NE(r.err.find("is ambiguous"), std::string::npos) << r.err;
}

TEST(Settings, ClusteredShortFlagsAndAttachedValues) {
    Settings s = parsed({"-dMCp2000", "-t8", "-Ak"});
    EXPECT_TRUE(s.daemonize);
    EXPECT_FALSE(s.evict_to_free);
    EXPECT_FALSE(s.use_cas);
    EXPECT_EQ(s.port, 2000);
    EXPECT_EQ(s.num_threads, 8);
    EXPECT_TRUE(s.shutdown_enabled);
    EXPECT_TRUE(s.lock_memory);
}

TEST(Settings, VerboseRepeats) {
    EXPECT_EQ(parsed({"-v"}).verbose, 1);
    EXPECT_EQ(parsed({"-vv"}).verbose, 2);
    EXPECT_EQ(parsed({"-vvv"}).verbose, 3);
    EXPECT_EQ(parsed({"-v", "-v"}).verbose, 2);
    EXPECT_EQ(parsed({"-vv", "--verbose"}).verbose, 3);
    EXPECT_EQ(parsed({"--verbose=2"}).verbose, 2);
    EXPECT_EQ(parsed({"-v", "--verbose=2"}).verbose, 3);
}

TEST(Settings, ListenListsRepeatAndDeduplicate) {
    Settings s = parsed(
        {"-l", "127.0.0.1,::1", "-l", "10.0.0.1:11311", "-l", "127.0.0.1", "-l", "10.0.0.2,,"});
    EXPECT_EQ(s.listen,
              (std::vector<std::string>{"127.0.0.1", "::1", "10.0.0.1:11311", "10.0.0.2"}));
}

TEST(Settings, MemoryIsMegabytesReadLikeAtoi) {
    EXPECT_EQ(parsed({"-m", "1024"}).max_bytes, 1024ull << 20);
    EXPECT_EQ(parsed({"-m", "4096"}).max_bytes, 4096ull << 20);
    // memcached 1.6.18 has no -m suffix: atoi reads "64m" as 64 (MB). Same here, with a warning.
    Settings s;
    Result r = parse({"-m", "64m"}, &s);
    EXPECT_EQ(r.outcome, ParseOutcome::Run);
    EXPECT_EQ(s.max_bytes, 64u << 20);
    EXPECT_NE(r.err.find("WARNING: -m \"64m\" is read as 64"), std::string::npos) << r.err;
}

TEST(Settings, ItemSizeSuffixes) {
    EXPECT_EQ(parsed({"-I", "1024k"}).item_size_max, 1u << 20);
    EXPECT_EQ(parsed({"-I", "1024K"}).item_size_max, 1u << 20);
    EXPECT_EQ(parsed({"-I", "1M"}).item_size_max, 1u << 20);
    EXPECT_EQ(parsed({"-I", "1048576"}).item_size_max, 1u << 20);
    EXPECT_EQ(parsed({"-I", "512k"}).item_size_max, 512u << 10);
    EXPECT_EQ(parsed({"-m", "128", "-I", "8m"}).item_size_max, 8u << 20);
    // the check is made once everything is read: -I before -m is fine
    EXPECT_EQ(parsed({"-I", "32m", "-m", "64"}).item_size_max, 32u << 20);
    EXPECT_EQ(parsed({"-m", "4096", "-I", "1024m"}).item_size_max, 1024u << 20);
}

TEST(Settings, NumbersAndText) {
    EXPECT_EQ(parsed({"-a", "0666"}).access_mask, 0666);
    EXPECT_EQ(parsed({"-p", "0"}).port, 0);
    EXPECT_EQ(parsed({"-p", "-1"}).port, -1);
    EXPECT_EQ(parsed({"-p", "65535"}).port, 65535);
    EXPECT_EQ(parsed({"-b", "0"}).backlog, 0);  // memcached passes any backlog to listen()
    EXPECT_EQ(parsed({"-D", ":"}).prefix_delimiter, ':');
    EXPECT_EQ(parsed({"-D", "ab"}).prefix_delimiter, 'a');  // memcached uses the first character
    EXPECT_DOUBLE_EQ(parsed({"-f", "1.08"}).factor, 1.08);
    EXPECT_EQ(parsed({"-t", "64"}).num_threads, 64);
}

TEST(Settings, ManyThreadsWarnButRun) {
    Settings s;
    Result r = parse({"-t", "65"}, &s);
    EXPECT_EQ(r.outcome, ParseOutcome::Run);
    EXPECT_EQ(s.num_threads, 65);
    EXPECT_NE(r.err.find("WARNING: Setting a high number of workerthreads is not recommended."),
              std::string::npos);
}

TEST(Settings, ArgumentsThatAreNotOptionsAreIgnoredAloud) {
    Settings s;
    Result r = parse({"-p", "5", "modern", "-m", "100"}, &s);
    EXPECT_EQ(r.outcome, ParseOutcome::Run);
    EXPECT_EQ(s.port, 5);
    EXPECT_EQ(s.max_bytes, 100u << 20);  // options after it are still read, as memcached does
    EXPECT_NE(r.err.find("ignoring \"modern\""), std::string::npos) << r.err;
}

TEST(Settings, Suboptions) {
    Settings s = parsed({"-o",
                         "hashpower=20,no_lru_crawler,no_maxconns_fast,idle_timeout=30,"
                         "hash_algorithm=xxh3,no_lru_maintainer,"
                         "no_hashexpand,no_slab_reassign,slab_automove=2,modern,"});
    EXPECT_EQ(s.hashpower_init, 20u);
    EXPECT_FALSE(s.lru_crawler);
    EXPECT_FALSE(s.maxconns_fast);
    EXPECT_EQ(s.idle_timeout, 30u);
    EXPECT_EQ(s.hash_algorithm, "xxh3");
    EXPECT_FALSE(s.hash_algorithm_default);
    EXPECT_FALSE(s.lru_maintainer);
    EXPECT_FALSE(s.hash_expand);
    EXPECT_FALSE(s.slab_reassign);
    EXPECT_EQ(s.slab_automove, 2);
    EXPECT_TRUE(s.modern);
}

TEST(Settings, SuboptionsRepeatAndLaterWins) {
    Settings s = parsed({"-o", "no_lru_crawler", "-o", "lru_crawler,maxconns_fast",
                         "--extended=lru_maintainer,slab_reassign,slab_automove"});
    EXPECT_TRUE(s.lru_crawler);
    EXPECT_TRUE(s.maxconns_fast);
    EXPECT_TRUE(s.lru_maintainer);
    EXPECT_TRUE(s.slab_reassign);
    EXPECT_EQ(s.slab_automove, 1);  // no value means 1, as memcached
    EXPECT_EQ(parsed({"-o", "no_slab_automove"}).slab_automove, 0);
    EXPECT_EQ(parsed({"-o", ""}).hashpower_init, 0u);  // an empty list is nothing
}

TEST(Settings, HashAlgorithmNames) {
    for (const char* name : {"jenkins", "murmur3", "xxh3"}) {
        Settings s = parsed({"-o", std::string("hash_algorithm=") + name});
        EXPECT_EQ(s.hash_algorithm, name);
    }
}

TEST(Settings, NoModernRestoresOldDefaults) {
    Settings s = parsed({"-o", "no_modern"});
    EXPECT_FALSE(s.modern);
    EXPECT_FALSE(s.maxconns_fast);
    EXPECT_FALSE(s.lru_crawler);
    EXPECT_FALSE(s.lru_maintainer);
    EXPECT_FALSE(s.slab_reassign);
    EXPECT_EQ(s.slab_automove, 0);
    EXPECT_EQ(s.hash_algorithm, "jenkins");
    EXPECT_EQ(s.slab_chunk_max, 1u << 20);  // whole pages, so -I must be a multiple of 1 MB
    // ... unless -I is above 1 MB, when memcached goes back to half pages
    EXPECT_EQ(parsed({"-o", "no_modern", "-I", "2m"}).slab_chunk_max, 512u << 10);
    // and a later suboption can turn one back on
    EXPECT_TRUE(parsed({"-o", "no_modern,lru_crawler"}).lru_crawler);
}

TEST(Settings, SlabChunkMax) {
    EXPECT_EQ(parsed({"-o", "slab_chunk_max=16384"}).slab_chunk_max, 16384u);
    EXPECT_EQ(parsed({"-I", "1k", "-o", "slab_chunk_max=1024"}).slab_chunk_max, 1024u);
    EXPECT_EQ(parsed({"-o", "no_chunked_items"}).slab_chunk_max, 1u << 20);
}

TEST(Settings, AcceptedNoOpSuboptions) {
    Settings s;
    Result r = parse({"-o", "resp_obj_mem_limit=5"}, &s);
    EXPECT_EQ(r.outcome, ParseOutcome::Run);
    EXPECT_NE(r.err.find("DEPRECATED: resp_obj_mem_limit no longer used"), std::string::npos);
    parsed({"-o", "inline_ascii_resp,no_inline_ascii_resp,no_drop_privileges,modern=1"});
}

// Each of these must fail with memcached's message (or ours, for what memcached has and this
// server refuses), on stderr, and print nothing on stdout.
struct Refusal {
    std::vector<std::string> args;
    std::string message;
};

const Refusal kRefusals[] = {
    // memcached's own checks and words
    {{"-t", "0"}, "Number of threads must be greater than 0\n"},
    {{"-t", "abc"}, "Number of threads must be greater than 0\n"},
    {{"-t", "-2"}, "Number of threads must be greater than 0\n"},
    {{"-c", "0"}, "Maximum connections must be greater than 0\n"},
    {{"-c", "-3"}, "Maximum connections must be greater than 0\n"},
    {{"-R", "0"}, "Number of requests per event must be greater than 0\n"},
    {{"-R", "-1"}, "Number of requests per event must be greater than 0\n"},
    {{"-n", "0"}, "Chunk size must be greater than 0\n"},
    {{"-n", "-5"}, "Chunk size must be greater than 0\n"},
    {{"-f", "1"}, "Factor must be greater than 1\n"},
    {{"-f", "0.5"}, "Factor must be greater than 1\n"},
    {{"-f", "abc"}, "Factor must be greater than 1\n"},
    {{"-f", "nan"}, "Factor must be greater than 1\n"},
    {{"-D", ""}, "No delimiter specified\n"},
    {{"-B", "bogus"},
     "Invalid value for binding protocol: bogus\n -- should be one of auto, binary, or ascii\n"},
    {{"-I", "512"}, "Item max size cannot be less than 1024 bytes.\n"},
    {{"-I", "2g"}, "Item max size cannot be less than 1024 bytes.\n"},  // atoi("2") bytes
    {{"-I", "-5k"}, "Item max size cannot be less than 1024 bytes.\n"},
    {{"-I", "1k"},
     "slab_chunk_max (bytes: 524288) cannot be larger than -I (item_size_max 1024)\n"},
    {{"-I", "600k"},
     "-I (item_size_max: 614400) must be evenly divisible by slab_chunk_max (bytes: 524288)\n"},
    {{"-I", "100m"}, "Cannot set item size limit higher than 1/2 of memory max.\n"},
    {{"-m", "1", "-I", "1m"}, "Cannot set item size limit higher than 1/2 of memory max.\n"},
    {{"-m", "0"}, "Cannot set item size limit higher than 1/2 of memory max.\n"},
    {{"-m", "1g"}, "Cannot set item size limit higher than 1/2 of memory max.\n"},
    {{"-m", "4096", "-I", "1025m"}, "Cannot set item size limit higher than a gigabyte.\n"},
    {{"-o", "slab_chunk_max=1000"},
     "-I (item_size_max: 1048576) must be evenly divisible by slab_chunk_max (bytes: 1000)\n"},
    {{"-I", "1536k", "-o", "slab_chunk_max=786432"},
     "slab_chunk_max (bytes: 786432) must divide evenly into 1048576 (slab_page_size)\n"},
    {{"-o", "no_modern", "-I", "512k"},
     "slab_chunk_max (bytes: 1048576) cannot be larger than -I (item_size_max 524288)\n"},
    {{"-p", "65536"}, "ERROR: Invalid port number 65536.\n"},
    {{"-o", "nonsense"}, "Illegal suboption \"nonsense\"\n"},
    {{"-o", "nonsense=1"}, "Illegal suboption \"nonsense=1\"\n"},
    {{"-o", ",modern"}, "Illegal suboption \"\"\n"},
    {{"-o", "modern,,modern"}, "Illegal suboption \"\"\n"},
    {{"-o", "hashpower"}, "Missing numeric argument for hashpower\n"},
    {{"-o", "hashpower=5"}, "Initial hashtable multiplier of 5 is too low\n"},
    {{"-o", "hashpower=abc"}, "Initial hashtable multiplier of 0 is too low\n"},
    {{"-o", "hashpower=40"},
     "Initial hashtable multiplier of 40 is too high\n"
     "Choose a value based on \"STAT hash_power_level\" from a running instance\n"},
    {{"-o", "tail_repair_time"}, "-o tail_repair_time: not implemented by this server yet\n"},
    {{"-o", "tail_repair_time=5"}, "-o tail_repair_time: not implemented by this server yet\n"},
    {{"-o", "hash_algorithm"}, "Missing hash_algorithm argument\n"},
    {{"-o", "hash_algorithm=crc32"}, "Unknown hash_algorithm option (jenkins, murmur3, xxh3)\n"},
    {{"-o", "lru_crawler_sleep"}, "-o lru_crawler_sleep: not implemented by this server yet\n"},
    {{"-o", "lru_crawler_sleep=1000001"}, "-o lru_crawler_sleep: not implemented by this server yet\n"},
    {{"-o", "lru_crawler_tocrawl"}, "-o lru_crawler_tocrawl: not implemented by this server yet\n"},
    {{"-o", "lru_crawler_tocrawl=x"}, "-o lru_crawler_tocrawl: not implemented by this server yet\n"},
    {{"-o", "lru_crawler_tocrawl=-1"}, "-o lru_crawler_tocrawl: not implemented by this server yet\n"},
    {{"-o", "idle_timeout"}, "Missing numeric argument for idle_timeout\n"},
    {{"-o", "read_buf_mem_limit"}, "Missing read_buf_mem_limit argument"},  // memcached's
    {{"-o", "read_buf_mem_limit=lots"}, "could not parse argument to read_buf_mem_limit"},
    {{"-o", "slab_chunk_max"}, "Missing slab_chunk_max argument\n"},
    {{"-o", "slab_chunk_max=big"}, "could not parse argument to slab_chunk_max\n"},
    {{"-o", "slab_automove=3"}, "slab_automove must be between 0 and 2\n"},
    {{"-l", "notls:127.0.0.1"}, "'notls' option is valid only when SSL is enabled\n"},
    // getopt's own message, then memcached's
    {{"-x"}, "invalid option -- 'x'\nIllegal argument \"?\"\n"},
    {{"--no-such-option"}, "unrecognized option '--no-such-option'\nIllegal argument \"?\"\n"},
    {{"-p"}, "option requires an argument -- 'p'\nIllegal argument \"?\"\n"},
    {{"--port"}, "option '--port' requires an argument\nIllegal argument \"?\"\n"},
    // memcached options this server does not offer
    {{"-S"}, "-S (--enable-sasl): SASL authentication is not supported by this server\n"},
    {{"--enable-sasl"}, "-S (--enable-sasl): SASL authentication"},
    {{"-Z", "-p", "0"}, "ERROR: You cannot enable SSL without a TCP port.\n"},
    {{"-o", "ssl_verify_mode=4"}, "Invalid ssl_verify_mode. Use help to see valid options.\n"},
    {{"-o", "ssl_min_version=tlsv1.3"}, "could not parse argument to ssl_min_version\n"},
    {{"-o", "ssl_chain_cert"}, "Missing ssl_chain_cert argument\n"},
    {{"-Y", "/etc/auth"}, "-Y (--auth-file): ascii authentication files are not supported"},
    {{"--auth-file=/x"}, "-Y (--auth-file)"},
    {{"-e", "/dev/shm/mc"}, "-e (--memory-file): memory files (restartable cache) are not"},
    {{"--memory-file=/x"}, "-e (--memory-file)"},
    {{"-i"}, "-i (--license): no license text is bundled with this server\n"},
    {{"--license"}, "-i (--license)"},
    {{"-N", "4"}, "-N (--napi-ids): NAPI ID based thread selection is not supported"},
    {{"--napi-ids=4"}, "-N (--napi-ids)"},
    {{"-o", "ext_path=/mnt/x:1G"}, "-o ext_path: extstore is not supported by this server\n"},
    {{"-o", "ext_threads=2"}, "-o ext_threads: extstore is not supported by this server\n"},
    {{"-o", "slab_automove_freeratio=0.1"}, "-o slab_automove_freeratio: extstore is not"},
    {{"-o", "ssl_wbuf_size=x"}, "could not parse argument to ssl_wbuf_size\n"},
    {{"-o", "proxy_config=/x.lua"}, "-o proxy_config: the proxy is not supported by this server\n"},
    {{"-o", "hot_lru_pct=20"}, "-o hot_lru_pct: the segmented LRU"},
    {{"-o", "warm_lru_pct=40"}, "-o warm_lru_pct: the segmented LRU"},
    {{"-o", "hot_max_factor=0.2"}, "-o hot_max_factor: the segmented LRU"},
    {{"-o", "warm_max_factor=2"}, "-o warm_max_factor: the segmented LRU"},
    {{"-o", "slab_automove_ratio=0.5"}, "-o slab_automove_ratio: slab tuning"},
    {{"-o", "slab_sizes=100-200"}, "-o slab_sizes: slab tuning"},
    {{"-o", "track_sizes"}, "-o track_sizes: \"stats sizes\" is not offered by this server\n"},
    {{"-o", "watcher_logbuf_size"}, "Missing watcher_logbuf_size argument"},  // memcached's
    {{"-o", "worker_logbuf_size=abc"}, "could not parse argument to worker_logbuf_size"},
    {{"-o", "drop_privileges"}, "-o drop_privileges: dropping privileges with seccomp"},
    {{"-o", "sock_cookie_id=7"}, "-o sock_cookie_id: socket marks (SO_MARK)"},
    // values that memcached misreads and this server refuses instead
    {{"-m", "-1"}, "Memory limit cannot be negative: -m -1\n"},
    {{"-p", "-2"}, "ERROR: Invalid port number -2.\n"},
    {{"-p", "99999999999"}, "Number out of range for -p: \"99999999999\"\n"},
    {{"-o", "slab_chunk_max=0"}, "slab_chunk_max must be greater than 0 (bytes)\n"},
    {{"-o", "idle_timeout=-5"}, "idle_timeout cannot be negative: -5\n"},
    {{"--verbose=loud"}, "--verbose=loud: the level must be a number from 0 to 16\n"},
    {{"-l", ""}, "-l needs an address to listen on\n"},
    {{"-l", ",,"}, "-l needs an address to listen on\n"},
    {{"-o", "repl_hint_rate=-1"}, "repl_hint_rate must be from 0 to 10000000: -1\n"},
    {{"-o", "repl_hint_ms=5"}, "repl_hint_ms must be from 10 to 10000: 5\n"},
};

// Read hints (doc/replication.md): on by default at 20000 a second per link, every 200 ms.
TEST(Settings, ReplicationHints) {
    Settings d = parsed({});
    EXPECT_EQ(d.repl_hint_rate, 20000u);
    EXPECT_EQ(d.repl_hint_ms, 200u);
    Settings s = parsed({"-o", "repl_hint_rate=0,repl_hint_ms=50"});
    EXPECT_EQ(s.repl_hint_rate, 0u);
    EXPECT_EQ(s.repl_hint_ms, 50u);
}

TEST(Settings, RefusalsSayWhyOnStderr) {
    for (const Refusal& want : kRefusals) {
        Settings s;
        Result r = parse(want.args, &s);
        EXPECT_EQ(r.outcome, ParseOutcome::ExitError) << joined(want.args);
        EXPECT_NE(r.err.find(want.message), std::string::npos)
            << joined(want.args) << "\nwanted: " << want.message << "\ngot: " << r.err;
        EXPECT_EQ(r.out, "") << joined(want.args);
    }
}

TEST(Settings, SuboptionErrorStopsAtTheFirstBadOne) {
    Settings s;
    Result r = parse({"-o", "hashpower=20,bogus,no_lru_crawler"}, &s);
    EXPECT_EQ(r.outcome, ParseOutcome::ExitError);
    EXPECT_EQ(r.err, "Illegal suboption \"bogus\"\n");
    EXPECT_TRUE(s.lru_crawler);
}

TEST(Settings, HelpPrintsUsageAndStops) {
    Settings s;
    Result r = parse({"-h"}, &s);
    EXPECT_EQ(r.outcome, ParseOutcome::ExitOk);
    EXPECT_EQ(r.out, usage_text());
    EXPECT_EQ(r.err, "");
    EXPECT_EQ(parse({"--help"}, &s).outcome, ParseOutcome::ExitOk);
    // like memcached: -h exits at once, options after it are not looked at, those before are
    EXPECT_EQ(parse({"-h", "-t", "0"}, &s).outcome, ParseOutcome::ExitOk);
    EXPECT_EQ(parse({"-t", "0", "-h"}, &s).outcome, ParseOutcome::ExitError);
}

TEST(Settings, VersionLine) {
    Settings s;
    Result r = parse({"-V"}, &s);
    EXPECT_EQ(r.outcome, ParseOutcome::ExitOk);
    EXPECT_EQ(r.out.rfind("memcached 1.6.18", 0), 0u) << r.out;
    EXPECT_EQ(r.out.back(), '\n');
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);
    EXPECT_EQ(parse({"--version"}, &s).out, r.out);
}

TEST(Settings, UsageListsEverySupportedOption) {
    std::string u = usage_text();
    EXPECT_EQ(u.rfind("memcached 1.6.18", 0), 0u);
    for (const char* opt : {"-p, --port=<num>",
                            "-U, --udp-port=<num>",
                            "-s, --unix-socket=<file>",
                            "-a, --unix-mask=<mask>",
                            "-A, --enable-shutdown",
                            "-l, --listen=<addr>",
                            "-d, --daemon",
                            "-r, --enable-coredumps",
                            "-u, --user=<user>",
                            "-m, --memory-limit=<num>",
                            "-M, --disable-evictions",
                            "-c, --conn-limit=<num>",
                            "-k, --lock-memory",
                            "-v, --verbose",
                            "-vv ",
                            "-vvv ",
                            "-h, --help",
                            "-V, --version",
                            "-P, --pidfile=<file>",
                            "-f, --slab-growth-factor=<num>",
                            "-n, --slab-min-size=<bytes>",
                            "-D <char>",
                            "-t, --threads=<num>",
                            "-R, --max-reqs-per-event",
                            "-C, --disable-cas",
                            "-b, --listen-backlog=<num>",
                            "-B, --protocol=<name>",
                            "-I, --max-item-size=<num>",
                            "-F, --disable-flush-all",
                            "-X, --disable-dumping",
                            "-W, --disable-watch",
                            "-o, --extended"}) {
        EXPECT_NE(u.find(std::string("\n") + opt), std::string::npos) << opt;
    }
    for (const char* sub :
         {"maxconns_fast", "hashpower", "no_hashexpand", "hash_algorithm",
          "no_lru_crawler", "no_lru_maintainer", "idle_timeout", "slab_chunk_max", "slab_reassign", "slab_automove",
          "modern", "no_modern"}) {
        EXPECT_NE(u.find(std::string("\n   - ") + sub + ":"), std::string::npos) << sub;
    }
    EXPECT_NE(u.find("unix-socket"), std::string::npos);
    // Scripts probe `memcached -h` for features: never name what is refused here.
    for (const char* absent : {"--enable-sasl", "--auth-file", "--memory-file",
                               "--napi-ids", "--license", "ext_path",
                               "proxy_config", "hot_lru_pct", "temporary_ttl", "track_sizes"}) {
        EXPECT_EQ(u.find(absent), std::string::npos) << absent;
    }
    // memcached's layout: help text from column 26, every line within 100 columns
    EXPECT_NE(u.find("\n-p, --port=<num>          TCP port"), std::string::npos);
    std::istringstream lines(u);
    std::string line;
    while (std::getline(lines, line)) EXPECT_LE(line.size(), 100u) << line;
}

TEST(Settings, ParsingTwiceStartsAfresh) {
    Settings a = parsed({"-p", "1111", "-t", "2"});
    Settings b = parsed({"-p", "2222"});
    EXPECT_EQ(a.port, 1111);
    EXPECT_EQ(b.port, 2222);
    EXPECT_EQ(b.num_threads, 4);
    Settings c;
    EXPECT_EQ(parse({"-x"}, &c).outcome, ParseOutcome::ExitError);
    EXPECT_EQ(parsed({"-vv"}).verbose, 2);  // getopt's state after an error is reset too
}

TEST(Settings, NothingEscapes) {
    Settings s;
    EXPECT_NO_THROW(parse({"-o", "hashpower=5"}, &s));
    EXPECT_NO_THROW(parse({"-p", std::string(100000, '9')}, &s));
    EXPECT_NO_THROW(parse({"-o", std::string(100000, ',')}, &s));
}

TEST(Settings, BinaryProtocolBinding) {
    EXPECT_EQ(parsed({"-B", "binary"}).binding_protocol, Protocol::Binary);
    EXPECT_EQ(parsed({"--protocol=binary"}).binding_protocol, Protocol::Binary);
    EXPECT_EQ(parsed({"-B", "auto"}).binding_protocol, Protocol::Auto);
    EXPECT_EQ(parsed({"-U", "11211"}).udp_port, 11211);
    EXPECT_EQ(parsed({"--udp-port=-1"}).udp_port, -1);
}

}  // namespace
}  // namespace mcm::server

namespace mcm::server {

TEST(Settings, IoEngine) {
    EXPECT_EQ(parsed({}).io_engine, Settings::IoEngine::Uring);  // the default
    EXPECT_EQ(parsed({"-o", "io_engine=epoll"}).io_engine, Settings::IoEngine::Epoll);
    EXPECT_EQ(parsed({"-o", "io_engine=uring"}).io_engine, Settings::IoEngine::Uring);
    Settings t;
    Result r = parse({"-o", "io_engine=kqueue"}, &t);
    EXPECT_EQ(r.outcome, ParseOutcome::ExitError);
    EXPECT_NE(r.err.find("io_engine"), std::string::npos) << r.err;
}

}  // namespace mcm::server
