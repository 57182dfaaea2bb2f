// orderer_rdma: the shared-memory ("shm") RDMA provider and the verbs probe.
//
// The shm provider emulates one-sided RDMA on a single host with a hardened memory-key model:
// - A memory region is anonymous private memory of its owner; no peer ever maps it.
// - Each connection has a mailbox: a sealed memfd (no shrink, no grow, no more seals) created by the
//   connecting side and passed over a UNIX seqpacket socket. The mailbox holds two channels (one per
//   requesting side), each a request ring and a completion ring of fixed slots.
// - Doorbells are one-byte datagrams on that socket, sent with MSG_DONTWAIT: a peer can at worst make
//   them fail (its own loss). (An event fd shared with the peer would not do: the peer could make the
//   shared file blocking and fill its counter, and our next doorbell would block our event loop.) Each
//   side keeps a private event fd to wake itself when it yields with work left.
// - The owner of a region plays the NIC: it copies each request out of the shared slot (the peer may
//   change it at any time), validates key, key-to-connection binding, permission and overflow-safe
//   bounds (and, for slotted keys, the slot's sequence number and MAC) and only then touches the
//   region. Every refusal is answered with the same status, counted per reason and reported as a
//   security event; a connection is closed after `closeAfter` refusals and an identity banned after
//   `banAfter`.
// - Every index read from shared memory is checked against the ring size before it is used.
// All of this runs on the owner's event loop (libuv polls the event fds), so a revocation takes effect
// for every request processed after it: there is no write in flight under an old key.

#include <fcntl.h>
#include <napi.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace orderer_rdma {

Napi::Value ProbeVerbs(const Napi::CallbackInfo& info);

namespace {

// ------------------------------------------------------------------ layout

constexpr uint32_t kMagic = 0x4f52444d;  // "ORDM"
constexpr uint32_t kVersion = 1;
constexpr uint32_t kSlotBytes = 16384;
constexpr uint32_t kSlots = 128;
constexpr uint32_t kHdrBytes = 64;
constexpr uint32_t kMaxPayload = kSlotBytes - kHdrBytes;
constexpr uint32_t kCtlBytes = 128;  // producer index at 0, awake at 32, rung at 40, consumer index at 64, stalled at 96
constexpr size_t kRingBytes = kCtlBytes + size_t(kSlots) * kSlotBytes;
constexpr size_t kMailboxHeader = 4096;
// channel c (0: the connector requests, 1: the acceptor requests): request ring, completion ring
constexpr size_t kMailboxBytes = kMailboxHeader + 4 * kRingBytes;
constexpr uint32_t kBudget = kSlots;  // requests served per pass (OnWake makes at most 9 passes, then yields)

// The slot header a MAC-checked ("slotted") key requires at the start of every write.
constexpr uint32_t kSlotHdr = 32;  // seq u64, bodyLen u32, flags u32, mac[16]
constexpr uint32_t kMacBytes = 16;

enum Op : uint8_t { OP_WRITE = 1, OP_WRITE_IMM = 2, OP_READ = 3, OP_SEND = 4 };
enum Status : uint8_t { ST_OK = 0, ST_REMOTE_ERROR = 1 };
enum Perm : uint8_t { PERM_READ = 1, PERM_WRITE = 2 };

size_t RingOffset(int channel, int which /*0 req, 1 cpl*/) {
  return kMailboxHeader + (size_t(channel) * 2 + which) * kRingBytes;
}

uint32_t LoadAcq(const uint8_t* p) { return __atomic_load_n(reinterpret_cast<const uint32_t*>(p), __ATOMIC_ACQUIRE); }
void StoreRel(uint8_t* p, uint32_t v) { __atomic_store_n(reinterpret_cast<uint32_t*>(p), v, __ATOMIC_RELEASE); }

uint32_t Rd32(const uint8_t* p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
uint64_t Rd64(const uint8_t* p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}
void Wr32(uint8_t* p, uint32_t v) { memcpy(p, &v, 4); }
void Wr64(uint8_t* p, uint64_t v) { memcpy(p, &v, 8); }

// HMAC-SHA256 under one 32-byte key, with the key's inner and outer pad blocks absorbed once: a slot's MAC
// then costs the message's blocks plus one more, not a context set up per call.
struct SlotMacKey {
  SHA256_CTX inner, outer;
  uint8_t key[32] = {0};

  void Init(const uint8_t* k) {
    memcpy(key, k, 32);
    uint8_t pad[64];
    for (int i = 0; i < 64; i++) pad[i] = uint8_t((i < 32 ? k[i] : 0) ^ 0x36);
    SHA256_Init(&inner);
    SHA256_Update(&inner, pad, 64);
    for (int i = 0; i < 64; i++) pad[i] = uint8_t((i < 32 ? k[i] : 0) ^ 0x5c);
    SHA256_Init(&outer);
    SHA256_Update(&outer, pad, 64);
    OPENSSL_cleanse(pad, sizeof pad);
  }

  // The slot MAC: HMAC(key, offset u64 LE || slot header's first 16 bytes || body), first 16 bytes.
  void Mac(uint64_t off, const uint8_t* hdr16, const uint8_t* body, size_t bodyLen, uint8_t out[32]) const {
    SHA256_CTX c = inner;
    uint8_t o8[8];
    Wr64(o8, off);
    SHA256_Update(&c, o8, 8);
    SHA256_Update(&c, hdr16, 16);
    SHA256_Update(&c, body, bodyLen);
    uint8_t ih[32];
    SHA256_Final(ih, &c);
    SHA256_CTX d = outer;
    SHA256_Update(&d, ih, 32);
    SHA256_Final(out, &d);
  }
};

struct Ring {
  uint8_t* base = nullptr;
  uint8_t* prodPtr() const { return base; }
  uint8_t* consPtr() const { return base + 64; }
  uint8_t* stalledPtr() const { return base + 96; }
  // In a request ring: set by the ring's owner while it is serving, so requesters can skip the doorbell.
  uint8_t* awakePtr() const { return base + 32; }
  // In a request ring: set by a requester that sent the owner a doorbell, cleared by the owner when the
  // doorbell wakes it; while it is set, further doorbells would add nothing and are not sent.
  uint8_t* rungPtr() const { return base + 40; }
  uint8_t* slot(uint32_t i) const { return base + kCtlBytes + size_t(i % kSlots) * kSlotBytes; }
};

void Doorbell(int efd) {
  if (efd < 0) return;
  uint64_t one = 1;
  ssize_t r = write(efd, &one, sizeof one);
  (void)r;
}

// ------------------------------------------------------------------ state

struct Provider;

enum class ConnState { Connecting, Accepting, Up, Closed };

struct Conn {
  uint32_t id = 0;
  Provider* prov = nullptr;
  ConnState state = ConnState::Connecting;
  bool connector = false;
  int sock = -1;
  int memfd = -1;
  int myEfd = -1;  // private: wakes this side when it yielded with work left
  uint8_t* mbox = nullptr;
  uv_poll_t* sockPoll = nullptr;
  uv_poll_t* efdPoll = nullptr;
  // Channel where this side is the owner (serves requests) and where it is the requester.
  Ring ownReq, ownCpl, myReq, myCpl;
  uint32_t ownReqCons = 0, ownCplProd = 0, myReqProd = 0, myCplCons = 0;
  uint32_t bad = 0;
  bool blocked = false;  // a post found the request ring full: tell JS when space frees
  SlotMacKey sendMac;    // the last key postSlot MACed under, prepared
  bool sendMacSet = false;
  std::string identity;
};

struct Region {
  uint32_t id = 0;
  uint8_t* mem = nullptr;
  size_t size = 0;
  Napi::Reference<Napi::ArrayBuffer> ref;
};

struct Key {
  uint32_t region = 0;
  uint32_t conn = 0;
  uint8_t perms = 0;
  uint64_t base = 0;
  uint64_t len = 0;
  bool slotted = false;
  uint32_t slotSize = 0;
  uint64_t nextSeq = 0;
  SlotMacKey mac;
};

struct Event {
  std::string type;
  uint32_t conn = 0;
  std::string reason;
  std::vector<uint8_t> data;
  bool hasData = false;
  uint32_t region = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
  uint32_t imm = 0;
  uint64_t wrId = 0;
  uint32_t status = 0;
};

void OnSockPoll(uv_poll_t* h, int status, int events);
void OnEfdPoll(uv_poll_t* h, int status, int events);
void OnListenPoll(uv_poll_t* h, int status, int events);

struct Provider {
  Napi::Env env;
  uv_loop_t* loop = nullptr;
  Napi::FunctionReference onEvents;
  std::unique_ptr<Napi::AsyncContext> asyncCtx;
  std::string path;
  int listenFd = -1;
  uv_poll_t* listenPoll = nullptr;
  bool closed = false;
  uint32_t nextConn = 1, nextRegion = 1;
  std::map<uint32_t, std::unique_ptr<Conn>> conns;
  std::map<uint32_t, std::unique_ptr<Region>> regions;
  std::unordered_map<uint64_t, Key> keys;
  std::unordered_set<uint64_t> revoked;
  std::deque<uint64_t> revokedOrder;
  std::unordered_map<std::string, uint32_t> strikes;  // refusals per identity
  std::unordered_set<std::string> banned;
  std::map<std::string, double> counters;
  std::vector<Event> pending;
  bool delivering = false;
  bool inCallback = false;
  uv_async_t* async = nullptr;
  // limits
  uint32_t closeAfter = 3, banAfter = 12, maxConnections = 64, revokedMax = 65536, maxKeys = 65536;
  size_t regionMaxBytes = size_t(1) << 30;

  explicit Provider(Napi::Env e) : env(e) {}

  void Count(const std::string& what, double by = 1) { counters[what] += by; }

  // Events raised outside a poll callback (a JS call closed a connection, say) are delivered on the next
  // turn of the event loop, never re-entrantly inside the JS call.
  void Emit(Event ev) {
    pending.push_back(std::move(ev));
    if (!inCallback && async) uv_async_send(async);
  }

  // Refuses a request: the peer sees only ST_REMOTE_ERROR; we count, raise an event, and close or ban.
  void Refuse(Conn* c, const char* reason) {
    Count(std::string("refused.") + reason);
    Count("refused");
    c->bad++;
    Event ev;
    ev.type = "security";
    ev.conn = c->id;
    ev.reason = reason;
    Emit(std::move(ev));
    if (!c->identity.empty()) {
      uint32_t s = ++strikes[c->identity];
      if (s >= banAfter && !banned.count(c->identity)) Ban(c->identity);
    }
  }

  void Ban(const std::string& identity) {
    banned.insert(identity);
    Count("banned");
    Event ev;
    ev.type = "security";
    ev.reason = "identity-banned";
    ev.data.assign(identity.begin(), identity.end());
    ev.hasData = true;
    Emit(std::move(ev));
    std::vector<uint32_t> victims;
    for (auto& [id, c] : conns)
      if (c->identity == identity && c->state != ConnState::Closed) victims.push_back(id);
    for (uint32_t id : victims) CloseConn(id, "identity-banned");
  }

  uint64_t FreshKey() {
    for (;;) {
      uint64_t k = 0;
      if (getrandom(&k, sizeof k, 0) != sizeof k) abort();  // no CSPRNG: nothing safe to do
      if (k == 0 || keys.count(k) || revoked.count(k)) continue;
      return k;
    }
  }

  void Remember(uint64_t k) {
    revoked.insert(k);
    revokedOrder.push_back(k);
    while (revokedOrder.size() > revokedMax) {
      revoked.erase(revokedOrder.front());
      revokedOrder.pop_front();
    }
  }

  bool Revoke(uint64_t k) {
    auto it = keys.find(k);
    if (it == keys.end()) return false;
    keys.erase(it);
    Remember(k);
    Count("keys.revoked");
    return true;
  }

  void RevokeWhere(bool (*pred)(const Key&, uint32_t), uint32_t arg) {
    std::vector<uint64_t> gone;
    for (auto& [k, key] : keys)
      if (pred(key, arg)) gone.push_back(k);
    for (uint64_t k : gone) Revoke(k);
  }

  Conn* Find(uint32_t id) {
    auto it = conns.find(id);
    return it == conns.end() ? nullptr : it->second.get();
  }

  Conn* NewConn(int sock, bool connector) {
    auto c = std::make_unique<Conn>();
    c->id = nextConn++;
    c->prov = this;
    c->sock = sock;
    c->connector = connector;
    c->state = connector ? ConnState::Connecting : ConnState::Accepting;
    c->sockPoll = new uv_poll_t;
    uv_poll_init(loop, c->sockPoll, sock);
    c->sockPoll->data = c.get();
    uv_poll_start(c->sockPoll, UV_READABLE | UV_DISCONNECT, OnSockPoll);
    Conn* raw = c.get();
    conns[c->id] = std::move(c);
    return raw;
  }

  void MapRings(Conn* c) {
    int mine = c->connector ? 0 : 1;
    int theirs = 1 - mine;
    c->myReq.base = c->mbox + RingOffset(mine, 0);
    c->myCpl.base = c->mbox + RingOffset(mine, 1);
    c->ownReq.base = c->mbox + RingOffset(theirs, 0);
    c->ownCpl.base = c->mbox + RingOffset(theirs, 1);
  }

  void GoUp(Conn* c) {
    c->state = ConnState::Up;
    c->efdPoll = new uv_poll_t;
    uv_poll_init(loop, c->efdPoll, c->myEfd);
    c->efdPoll->data = c;
    uv_poll_start(c->efdPoll, UV_READABLE, OnEfdPoll);
    Event ev;
    ev.type = c->connector ? "connected" : "accepted";
    ev.conn = c->id;
    Emit(std::move(ev));
    Doorbell(c->myEfd);  // serve anything the peer posted before we were up
  }

  static void FreePoll(uv_poll_t* p) {
    if (!p) return;
    uv_poll_stop(p);
    uv_close(reinterpret_cast<uv_handle_t*>(p), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  }

  void CloseConn(uint32_t id, const char* reason) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    std::unique_ptr<Conn> c = std::move(it->second);
    conns.erase(it);
    bool wasUp = c->state == ConnState::Up;
    c->state = ConnState::Closed;
    FreePoll(c->sockPoll);
    FreePoll(c->efdPoll);
    if (c->mbox) munmap(c->mbox, kMailboxBytes);
    for (int fd : {c->sock, c->memfd, c->myEfd})
      if (fd >= 0) close(fd);
    RevokeWhere([](const Key& k, uint32_t conn) { return k.conn == conn; }, id);
    Count(std::string("closed.") + reason);
    Event ev;
    ev.type = "closed";
    ev.conn = id;
    ev.reason = reason;
    ev.status = wasUp ? 1 : 0;
    Emit(std::move(ev));
  }

  // ---------------------------------------------------------------- handshake

  void OnAcceptable() {
    for (;;) {
      int s = accept4(listenFd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (s < 0) return;
      if (conns.size() >= maxConnections) {
        Count("refused.too-many-connections");
        close(s);
        continue;
      }
      NewConn(s, false);
    }
  }

  // Reads one seqpacket message with up to 2 fds. Returns bytes, 0 on EOF, -1 on EAGAIN, -2 on error.
  static ssize_t RecvWithFds(int sock, uint8_t* buf, size_t cap, std::vector<int>& fds) {
    char ctl[CMSG_SPACE(sizeof(int) * 4)];
    iovec iov{buf, cap};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl;
    msg.msg_controllen = sizeof ctl;
    ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? -1 : -2;
    for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
      if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
        size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int* p = reinterpret_cast<int*>(CMSG_DATA(cm));
        for (size_t i = 0; i < count; i++) fds.push_back(p[i]);
      }
    }
    if (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) return -2;
    return n;
  }

  static bool SendWithFds(int sock, const uint8_t* buf, size_t len, const std::vector<int>& fds) {
    char ctl[CMSG_SPACE(sizeof(int) * 4)];
    memset(ctl, 0, sizeof ctl);
    iovec iov{const_cast<uint8_t*>(buf), len};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (!fds.empty()) {
      msg.msg_control = ctl;
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
      cmsghdr* cm = CMSG_FIRSTHDR(&msg);
      cm->cmsg_level = SOL_SOCKET;
      cm->cmsg_type = SCM_RIGHTS;
      cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * fds.size());
    }
    return sendmsg(sock, &msg, MSG_NOSIGNAL) == ssize_t(len);
  }

  void OnSockReadable(Conn* c) {
    uint8_t buf[64];
    std::vector<int> fds;
    ssize_t n = RecvWithFds(c->sock, buf, sizeof buf, fds);
    if (n == -1) return;
    auto closeFds = [&fds]() {
      for (int fd : fds) close(fd);
      fds.clear();
    };
    if (n <= 0) {
      closeFds();
      CloseConn(c->id, n == 0 ? "peer-closed" : "socket-error");
      return;
    }
    if (c->state == ConnState::Accepting) {
      // hello: magic u32, version u32, mailbox bytes u64; fds: [mailbox memfd]
      const char* why = nullptr;
      int seals = -1;
      struct stat st {};
      if (n != 16 || Rd32(buf) != kMagic || Rd32(buf + 4) != kVersion || Rd64(buf + 8) != kMailboxBytes)
        why = "bad-hello";
      else if (fds.size() != 1)
        why = "bad-hello";
      else if ((seals = fcntl(fds[0], F_GET_SEALS)) < 0 ||
               (seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) != (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) ||
               (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)))
        why = "mailbox-unsealed";
      else if (fstat(fds[0], &st) != 0 || size_t(st.st_size) != kMailboxBytes)
        why = "mailbox-size";
      if (why) {
        closeFds();
        Count(std::string("refused.") + why);
        Event ev;
        ev.type = "security";
        ev.conn = c->id;
        ev.reason = why;
        Emit(std::move(ev));
        CloseConn(c->id, why);
        return;
      }
      void* m = mmap(nullptr, kMailboxBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
      if (m == MAP_FAILED) {
        closeFds();
        CloseConn(c->id, "mmap-failed");
        return;
      }
      c->mbox = static_cast<uint8_t*>(m);
      c->memfd = fds[0];
      c->myEfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      MapRings(c);
      uint8_t ack[8];
      Wr32(ack, kMagic);
      Wr32(ack + 4, kVersion);
      if (c->myEfd < 0 || !SendWithFds(c->sock, ack, sizeof ack, {})) {
        CloseConn(c->id, "handshake-failed");
        return;
      }
      GoUp(c);
      return;
    }
    if (c->state == ConnState::Connecting) {
      if (n != 8 || Rd32(buf) != kMagic || Rd32(buf + 4) != kVersion || !fds.empty()) {
        closeFds();
        CloseConn(c->id, "bad-ack");
        return;
      }
      GoUp(c);
      return;
    }
    // Established: doorbells. Drain them all (the peer may send many), then serve.
    closeFds();
    for (int k = 0; k < 1024; k++) {
      ssize_t m = RecvWithFds(c->sock, buf, sizeof buf, fds);
      closeFds();
      if (m == -1) break;
      if (m <= 0) {
        CloseConn(c->id, m == 0 ? "peer-closed" : "socket-error");
        return;
      }
    }
    OnWake(c);
  }

  // Rings the peer: a one-byte datagram that never blocks us.
  static void SockDoorbell(Conn* c) {
    uint8_t b = 1;
    ssize_t r = send(c->sock, &b, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)r;
  }

  // A peer broke the mailbox's invariants: count, report, cut it off.
  void Corrupt(Conn* c) {
    Count("refused.mailbox-corrupt");
    Event ev;
    ev.type = "security";
    ev.conn = c->id;
    ev.reason = "mailbox-corrupt";
    Emit(std::move(ev));
    CloseConn(c->id, "mailbox-corrupt");
  }

  // ---------------------------------------------------------------- the NIC: serving requests

  static bool MacOk(const Key& k, uint64_t off, const uint8_t* payload, uint32_t len) {
    uint8_t md[32];
    k.mac.Mac(off, payload, payload + kSlotHdr, len - kSlotHdr, md);
    return CRYPTO_memcmp(md, payload + 16, kMacBytes) == 0;
  }

  // Serves the peer's requests; returns true when the budget ran out (more may be waiting).
  bool ServeRequests(Conn* c, bool& posted) {
    uint32_t prod = LoadAcq(c->ownReq.prodPtr());
    uint32_t avail = prod - c->ownReqCons;
    if (avail > kSlots) {
      Corrupt(c);
      return false;
    }
    static thread_local std::vector<uint8_t> local(kSlotBytes);
    uint32_t done = 0;
    while (avail > 0 && done < kBudget) {
      uint32_t cplCons = LoadAcq(c->ownCpl.consPtr());
      uint32_t used = c->ownCplProd - cplCons;
      if (used > kSlots) {
        Corrupt(c);
        return false;
      }
      if (used == kSlots) {  // the peer has not taken its completions: wait to be rung
        StoreRel(c->ownCpl.stalledPtr(), 1);
        return false;
      }
      // Copy the whole request out of shared memory before looking at it.
      const uint8_t* slot = c->ownReq.slot(c->ownReqCons);
      memcpy(local.data(), slot, kHdrBytes);
      const uint8_t* h = local.data();
      uint8_t op = h[0];
      uint32_t len = Rd32(h + 4);
      if (len <= kMaxPayload && op != OP_READ) memcpy(local.data() + kHdrBytes, slot + kHdrBytes, len);
      uint64_t wrId = Rd64(h + 8);
      uint64_t rkey = Rd64(h + 16);
      uint64_t off = Rd64(h + 24);
      uint32_t imm = Rd32(h + 32);
      const uint8_t* payload = h + kHdrBytes;

      uint8_t* cpl = c->ownCpl.slot(c->ownCplProd);
      uint8_t status = ST_OK;
      uint32_t outLen = 0;
      const char* reason = nullptr;
      if (len > kMaxPayload) {
        reason = "bad-request";
      } else if (op == OP_SEND) {
        Event ev;
        ev.type = "recv";
        ev.conn = c->id;
        ev.data.assign(payload, payload + len);
        ev.hasData = true;
        Emit(std::move(ev));
        Count("served.send");
      } else if (op == OP_WRITE || op == OP_WRITE_IMM || op == OP_READ) {
        auto it = keys.find(rkey);
        uint8_t need = op == OP_READ ? PERM_READ : PERM_WRITE;
        if (it == keys.end()) {
          reason = revoked.count(rkey) ? "revoked-key" : "unknown-key";
        } else if (it->second.conn != c->id) {
          reason = "foreign-key";
        } else if (!(it->second.perms & need)) {
          reason = "permission";
        } else if (!(uint64_t(len) <= it->second.len && off <= it->second.len - len)) {
          reason = "out-of-bounds";
        } else {
          Key& k = it->second;
          if (k.slotted && op != OP_READ) {
            uint64_t seq = Rd64(payload);
            uint32_t body = Rd32(payload + 8);
            if (len < kSlotHdr || body != len - kSlotHdr || len > k.slotSize || off % k.slotSize != 0)
              reason = "slot-malformed";
            else if (!MacOk(k, off, payload, len))
              reason = "slot-forged";
            else if (seq < k.nextSeq)
              reason = "slot-replayed";
            else if (seq != k.nextSeq || off != (seq % (k.len / k.slotSize)) * k.slotSize)
              reason = "slot-out-of-order";
            else
              k.nextSeq++;
          }
          if (!reason) {
            auto rit = regions.find(k.region);
            if (rit == regions.end()) {
              reason = "revoked-key";
            } else if (op == OP_READ) {
              memcpy(cpl + kHdrBytes, rit->second->mem + k.base + off, len);
              outLen = len;
              Count("served.read");
            } else {
              memcpy(rit->second->mem + k.base + off, payload, len);
              Count("served.write");
              if (op == OP_WRITE_IMM) {
                Event ev;
                ev.type = "write";
                ev.conn = c->id;
                ev.region = k.region;
                ev.offset = k.base + off;
                ev.length = len;
                ev.imm = imm;
                Emit(std::move(ev));
              }
            }
          }
        }
      } else {
        reason = "bad-request";
      }
      if (reason) {
        status = ST_REMOTE_ERROR;
        outLen = 0;
      }
      // The completion: op, status, len, wr id. The same answer for every refusal.
      memset(cpl, 0, kHdrBytes);
      cpl[0] = op;
      cpl[1] = status;
      Wr32(cpl + 4, outLen);
      Wr64(cpl + 8, wrId);
      c->ownCplProd++;
      StoreRel(c->ownCpl.prodPtr(), c->ownCplProd);
      c->ownReqCons++;
      StoreRel(c->ownReq.consPtr(), c->ownReqCons);
      posted = true;
      avail--;
      done++;
      if (reason) {
        uint32_t id = c->id;
        Refuse(c, reason);
        if (!Find(id)) return false;  // banned and closed
        if (c->bad >= closeAfter) {
          CloseConn(id, "too-many-bad-requests");
          return false;
        }
      }
    }
    return avail > 0;
  }

  // Takes this side's completions.
  void TakeCompletions(Conn* c) {
    uint32_t prod = LoadAcq(c->myCpl.prodPtr());
    uint32_t avail = prod - c->myCplCons;
    uint32_t outstanding = c->myReqProd - c->myCplCons;
    if (avail > outstanding) {  // more completions than requests: the peer scribbled
      Corrupt(c);
      return;
    }
    bool took = avail > 0;
    const uint32_t count = avail;
    while (avail-- > 0) {
      const uint8_t* s = c->myCpl.slot(c->myCplCons);
      uint8_t hdr[kHdrBytes];
      memcpy(hdr, s, kHdrBytes);
      uint8_t status = hdr[1];
      uint32_t len = Rd32(hdr + 4);
      if (status != ST_OK || hdr[0] == OP_READ) {
        Event ev;
        ev.type = "completion";
        ev.conn = c->id;
        ev.status = status;
        ev.wrId = Rd64(hdr + 8);
        if (hdr[0] == OP_READ && status == ST_OK && len <= kMaxPayload) {
          ev.data.assign(s + kHdrBytes, s + kHdrBytes + len);
          ev.hasData = true;
        }
        if (status != ST_OK) Count("completions.failed");
        Emit(std::move(ev));
      }
      c->myCplCons++;
    }
    StoreRel(c->myCpl.consPtr(), c->myCplCons);
    if (took) {  // how many of our requests completed (in order), whatever their status
      Event ev;
      ev.type = "acked";
      ev.conn = c->id;
      ev.length = count;
      Emit(std::move(ev));
    }
    if (took && LoadAcq(c->myCpl.stalledPtr())) {
      StoreRel(c->myCpl.stalledPtr(), 0);
      RingPeer(c);
    }
    if (took && c->blocked) {
      c->blocked = false;
      Event ev;
      ev.type = "writable";
      ev.conn = c->id;
      Emit(std::move(ev));
    }
  }

  void OnWake(Conn* c) {
    uint64_t v;
    ssize_t r = read(c->myEfd, &v, sizeof v);
    (void)r;
    uint32_t id = c->id;
    // Doorbells sent from now on are needed: clear the flag before looking at the rings (a requester
    // publishes, then checks the flag; one of us sees the other's write).
    __atomic_store_n(reinterpret_cast<uint32_t*>(c->ownReq.rungPtr()), 0, __ATOMIC_SEQ_CST);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    for (int round = 0;; round++) {
      __atomic_store_n(reinterpret_cast<uint32_t*>(c->ownReq.awakePtr()), 1, __ATOMIC_SEQ_CST);
      bool posted = false;
      bool more = ServeRequests(c, posted);
      if (!Find(id)) return;
      if (posted) RingPeer(c);
      TakeCompletions(c);
      if (!Find(id)) return;
      if (more || round >= 8) {  // the budget ran out: yield to the event loop, then go on
        Doorbell(c->myEfd);
        return;
      }
      // Going to sleep: clear the flag, then look once more (a requester that saw the flag set skipped
      // the doorbell, so its work must be seen here). Requests waiting while our completion ring is full
      // are not work: the requester rings when it takes completions.
      __atomic_store_n(reinterpret_cast<uint32_t*>(c->ownReq.awakePtr()), 0, __ATOMIC_SEQ_CST);
      bool requests = LoadAcq(c->ownReq.prodPtr()) != c->ownReqCons &&
                      c->ownCplProd - LoadAcq(c->ownCpl.consPtr()) < kSlots;
      if (!requests && LoadAcq(c->myCpl.prodPtr()) == c->myCplCons) return;
    }
  }

  // Rings the peer unless it says it is serving (it then sees our work before sleeping) or a doorbell we
  // sent has not woken it yet (it clears the flag before it looks at the rings). A peer that lies about
  // either flag only delays its own service.
  void RingPeer(Conn* c) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(reinterpret_cast<const uint32_t*>(c->myReq.awakePtr()), __ATOMIC_SEQ_CST) != 0) {
      Count("doorbells.skipped");
      return;
    }
    if (__atomic_exchange_n(reinterpret_cast<uint32_t*>(c->myReq.rungPtr()), 1u, __ATOMIC_SEQ_CST) != 0) {
      Count("doorbells.coalesced");
      return;
    }
    SockDoorbell(c);
  }

  // ---------------------------------------------------------------- posting

  // Returns a pointer to the next free request slot, or null when the ring is full / not up.
  uint8_t* NextSlot(Conn* c) {
    if (c->state != ConnState::Up) return nullptr;
    uint32_t cons = LoadAcq(c->myReq.consPtr());
    uint32_t used = c->myReqProd - cons;
    if (used > kSlots) {
      Corrupt(c);
      return nullptr;
    }
    if (used == kSlots || c->myReqProd - c->myCplCons >= kSlots) {
      c->blocked = true;
      return nullptr;
    }
    return c->myReq.slot(c->myReqProd);
  }

  void Publish(Conn* c) {
    c->myReqProd++;
    StoreRel(c->myReq.prodPtr(), c->myReqProd);
    RingPeer(c);
  }

  // ---------------------------------------------------------------- delivery to JS

  void Deliver() {
    if (pending.empty() || delivering || closed) return;
    delivering = true;
    Napi::HandleScope scope(env);
    while (!pending.empty()) {
      std::vector<Event> batch;
      batch.swap(pending);
      Napi::Array arr = Napi::Array::New(env, batch.size());
      for (size_t i = 0; i < batch.size(); i++) {
        Event& e = batch[i];
        Napi::Object o = Napi::Object::New(env);
        o.Set("type", e.type);
        o.Set("conn", e.conn);
        if (!e.reason.empty()) o.Set("reason", e.reason);
        if (e.hasData) o.Set("data", Napi::Buffer<uint8_t>::Copy(env, e.data.data(), e.data.size()));
        if (e.type == "acked") {
          o.Set("count", e.length);
        } else if (e.type == "write") {
          o.Set("region", e.region);
          o.Set("offset", double(e.offset));
          o.Set("length", e.length);
          o.Set("imm", e.imm);
        } else if (e.type == "completion") {
          o.Set("status", e.status);
          o.Set("wrId", double(e.wrId));
        } else if (e.type == "closed") {
          o.Set("wasUp", e.status == 1);
        }
        arr.Set(uint32_t(i), o);
      }
      if (onEvents.IsEmpty()) continue;
      onEvents.Value().MakeCallback(env.Global(), {arr}, *asyncCtx);
      if (env.IsExceptionPending()) {
        Napi::Error err = env.GetAndClearPendingException();
        napi_fatal_exception(env, err.Value());
        break;
      }
      if (closed) break;
    }
    delivering = false;
  }
};

void OnListenPoll(uv_poll_t* h, int status, int events) {
  auto* p = static_cast<Provider*>(h->data);
  p->inCallback = true;
  p->OnAcceptable();
  p->inCallback = false;
  p->Deliver();
}

void OnSockPoll(uv_poll_t* h, int status, int events) {
  auto* c = static_cast<Conn*>(h->data);
  Provider* p = c->prov;
  uint32_t id = c->id;
  p->inCallback = true;
  if (status < 0 || (events & UV_DISCONNECT)) {
    // Drain a final message (an ack may arrive together with the hang-up).
    if (status >= 0 && (events & UV_READABLE) && c->state != ConnState::Up) p->OnSockReadable(c);
    if (p->Find(id)) p->CloseConn(id, "peer-closed");
  } else {
    p->OnSockReadable(c);
  }
  p->inCallback = false;
  p->Deliver();
}

void OnEfdPoll(uv_poll_t* h, int status, int events) {
  auto* c = static_cast<Conn*>(h->data);
  Provider* p = c->prov;
  p->inCallback = true;
  p->OnWake(c);
  p->inCallback = false;
  p->Deliver();
}

// ------------------------------------------------------------------ the JS class

class ShmProvider : public Napi::ObjectWrap<ShmProvider> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(
        env, "ShmProvider",
        {
            InstanceMethod<&ShmProvider::Listen>("listen"),
            InstanceMethod<&ShmProvider::Connect>("connect"),
            InstanceMethod<&ShmProvider::RegisterRegion>("registerRegion"),
            InstanceMethod<&ShmProvider::Deregister>("deregister"),
            InstanceMethod<&ShmProvider::Grant>("grant"),
            InstanceMethod<&ShmProvider::RevokeKey>("revoke"),
            InstanceMethod<&ShmProvider::Rotate>("rotate"),
            InstanceMethod<&ShmProvider::ExclusiveWriter>("exclusiveWriter"),
            InstanceMethod<&ShmProvider::PostWrite>("postWrite"),
            InstanceMethod<&ShmProvider::PostRead>("postRead"),
            InstanceMethod<&ShmProvider::PostSend>("postSend"),
            InstanceMethod<&ShmProvider::PostSlot>("postSlot"),
            InstanceMethod<&ShmProvider::PostRaw>("postRaw"),
            InstanceMethod<&ShmProvider::MailboxWrite>("mailboxWrite"),
            InstanceMethod<&ShmProvider::MailboxFd>("mailboxFd"),
            InstanceMethod<&ShmProvider::SetIdentity>("setIdentity"),
            InstanceMethod<&ShmProvider::IsBanned>("isBanned"),
            InstanceMethod<&ShmProvider::CloseConnection>("closeConnection"),
            InstanceMethod<&ShmProvider::Stats>("stats"),
            InstanceMethod<&ShmProvider::Close>("close"),
        });
  }

  explicit ShmProvider(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ShmProvider>(info), p_(info.Env()) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) {
      Napi::TypeError::New(env, "ShmProvider(options) needs an options object").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    Napi::Value cb = o.Get("onEvents");
    if (!cb.IsFunction()) {
      Napi::TypeError::New(env, "options.onEvents must be a function").ThrowAsJavaScriptException();
      return;
    }
    p_.onEvents = Napi::Persistent(cb.As<Napi::Function>());
    p_.asyncCtx = std::make_unique<Napi::AsyncContext>(env, "orderer-rdma");
    auto num = [&](const char* name, uint32_t& into) {
      Napi::Value v = o.Get(name);
      if (v.IsNumber()) into = v.As<Napi::Number>().Uint32Value();
    };
    num("closeAfter", p_.closeAfter);
    num("banAfter", p_.banAfter);
    num("maxConnections", p_.maxConnections);
    num("revokedMax", p_.revokedMax);
    num("maxKeys", p_.maxKeys);
    if (p_.closeAfter == 0) p_.closeAfter = 1;
    if (p_.banAfter == 0) p_.banAfter = 1;
    if (napi_get_uv_event_loop(env, &p_.loop) != napi_ok) {
      Napi::Error::New(env, "no event loop").ThrowAsJavaScriptException();
      return;
    }
    p_.async = new uv_async_t;
    uv_async_init(p_.loop, p_.async, [](uv_async_t* a) { static_cast<Provider*>(a->data)->Deliver(); });
    p_.async->data = &p_;
    uv_unref(reinterpret_cast<uv_handle_t*>(p_.async));
  }

  ~ShmProvider() override { Shutdown(); }

 private:
  Provider p_;

  bool Alive(Napi::Env env) {
    if (p_.closed) {
      Napi::Error::New(env, "the provider is closed").ThrowAsJavaScriptException();
      return false;
    }
    return true;
  }

  static Napi::Value Fail(Napi::Env env, const std::string& msg, const char* code = "ERR_RDMA") {
    Napi::Error e = Napi::Error::New(env, msg);
    e.Set("code", code);
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }

  void Shutdown() {
    if (p_.closed) return;
    std::vector<uint32_t> ids;
    for (auto& [id, c] : p_.conns) ids.push_back(id);
    for (uint32_t id : ids) p_.CloseConn(id, "provider-closed");
    p_.pending.clear();
    if (p_.async) {
      uv_close(reinterpret_cast<uv_handle_t*>(p_.async), [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
      p_.async = nullptr;
    }
    Provider::FreePoll(p_.listenPoll);
    p_.listenPoll = nullptr;
    if (p_.listenFd >= 0) {
      close(p_.listenFd);
      p_.listenFd = -1;
      unlink(p_.path.c_str());
    }
    p_.keys.clear();
    for (auto& [id, r] : p_.regions) r->ref.Reset();
    p_.regions.clear();
    p_.closed = true;
  }

  static bool SockAddr(const std::string& path, sockaddr_un& a) {
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof a.sun_path) return false;
    memcpy(a.sun_path, path.data(), path.size());
    return true;
  }

  Napi::Value Listen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    if (!info[0].IsString()) return Fail(env, "listen(path): path must be a string", "ERR_INVALID_ARG");
    std::string path = info[0].As<Napi::String>();
    sockaddr_un a;
    if (!SockAddr(path, a)) return Fail(env, "socket path empty or too long: " + path, "ERR_INVALID_ARG");
    if (p_.listenFd >= 0) return Fail(env, "already listening", "ERR_INVALID_STATE");
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) return Fail(env, std::string("socket: ") + strerror(errno));
    struct stat st {};
    if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path.c_str());  // a stale socket
    if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(s, 64) != 0) {
      std::string err = strerror(errno);
      close(s);
      return Fail(env, "cannot listen on " + path + ": " + err, "ERR_RDMA_LISTEN");
    }
    chmod(path.c_str(), 0600);
    p_.listenFd = s;
    p_.path = path;
    p_.listenPoll = new uv_poll_t;
    uv_poll_init(p_.loop, p_.listenPoll, s);
    p_.listenPoll->data = &p_;
    uv_poll_start(p_.listenPoll, UV_READABLE, OnListenPoll);
    return env.Undefined();
  }

  // connect(path, { unsealed?: boolean }) -> connection id; "connected" (or "closed") follows.
  Napi::Value Connect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    if (!info[0].IsString()) return Fail(env, "connect(path): path must be a string", "ERR_INVALID_ARG");
    bool unsealed = false;
    if (info.Length() > 1 && info[1].IsObject()) {
      Napi::Value u = info[1].As<Napi::Object>().Get("unsealed");
      unsealed = u.IsBoolean() && u.As<Napi::Boolean>().Value();
    }
    if (p_.conns.size() >= p_.maxConnections) return Fail(env, "too many connections", "ERR_RDMA_LIMIT");
    std::string path = info[0].As<Napi::String>();
    sockaddr_un a;
    if (!SockAddr(path, a)) return Fail(env, "socket path empty or too long: " + path, "ERR_INVALID_ARG");
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) return Fail(env, std::string("socket: ") + strerror(errno));
    if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      std::string err = strerror(errno);
      close(s);
      return Fail(env, "cannot connect to " + path + ": " + err, "ERR_RDMA_CONNECT");
    }
    int mfd = memfd_create("orderer-rdma-mailbox", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);  // private to this side
    bool ok = mfd >= 0 && efd >= 0 && ftruncate(mfd, off_t(kMailboxBytes)) == 0 &&
              (unsealed || fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0);
    void* m = ok ? mmap(nullptr, kMailboxBytes, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0) : MAP_FAILED;
    if (m == MAP_FAILED) {
      std::string err = strerror(errno);
      for (int fd : {s, mfd, efd})
        if (fd >= 0) close(fd);
      return Fail(env, "cannot create the mailbox: " + err);
    }
    uint8_t hello[16];
    Wr32(hello, kMagic);
    Wr32(hello + 4, kVersion);
    Wr64(hello + 8, kMailboxBytes);
    uint8_t* mb = static_cast<uint8_t*>(m);
    if (!Provider::SendWithFds(s, hello, sizeof hello, {mfd})) {
      std::string err = strerror(errno);
      munmap(m, kMailboxBytes);
      for (int fd : {s, mfd, efd}) close(fd);
      return Fail(env, "cannot send the mailbox: " + err, "ERR_RDMA_CONNECT");
    }
    Conn* c = p_.NewConn(s, true);
    c->mbox = mb;
    c->memfd = mfd;
    c->myEfd = efd;
    p_.MapRings(c);
    return Napi::Number::New(env, c->id);
  }

  // registerRegion(bytes) -> { id, buffer }: the owner's own view of the region.
  Napi::Value RegisterRegion(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    if (!info[0].IsNumber()) return Fail(env, "registerRegion(bytes): bytes must be a number", "ERR_INVALID_ARG");
    int64_t size = info[0].As<Napi::Number>().Int64Value();
    if (size <= 0 || size_t(size) > p_.regionMaxBytes)
      return Fail(env, "region size out of range", "ERR_INVALID_ARG");
    void* m = mmap(nullptr, size_t(size), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return Fail(env, std::string("mmap: ") + strerror(errno));
    size_t sz = size_t(size);
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, m, sz, [sz](Napi::Env, void* data) { munmap(data, sz); });
    auto r = std::make_unique<Region>();
    r->id = p_.nextRegion++;
    r->mem = static_cast<uint8_t*>(m);
    r->size = sz;
    r->ref = Napi::Persistent(ab);
    uint32_t id = r->id;
    p_.regions[id] = std::move(r);
    Napi::Object out = Napi::Object::New(env);
    out.Set("id", id);
    out.Set("memory", ab);
    return out;
  }

  Napi::Value Deregister(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    if (!info[0].IsNumber()) return Fail(env, "deregister(region)", "ERR_INVALID_ARG");
    uint32_t id = info[0].As<Napi::Number>().Uint32Value();
    auto it = p_.regions.find(id);
    if (it == p_.regions.end()) return Napi::Boolean::New(env, false);
    p_.RevokeWhere([](const Key& k, uint32_t region) { return k.region == region; }, id);
    it->second->ref.Reset();
    p_.regions.erase(it);
    return Napi::Boolean::New(env, true);
  }

  static bool ReadKey(const Napi::Value& v, uint64_t& out) {
    if (!v.IsBigInt()) return false;
    bool lossless = false;
    out = v.As<Napi::BigInt>().Uint64Value(&lossless);
    return lossless;
  }

  // grant(region, conn, perms, offset, length, { macKey?: Buffer(32), slotSize?: number }) -> rkey (bigint)
  Napi::Value Grant(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    for (size_t i = 0; i < 5; i++)
      if (!info[i].IsNumber()) return Fail(env, "grant(region, conn, perms, offset, length[, slots])", "ERR_INVALID_ARG");
    uint32_t region = info[0].As<Napi::Number>().Uint32Value();
    uint32_t conn = info[1].As<Napi::Number>().Uint32Value();
    uint32_t perms = info[2].As<Napi::Number>().Uint32Value();
    double offset = info[3].As<Napi::Number>().DoubleValue();
    double length = info[4].As<Napi::Number>().DoubleValue();
    auto rit = p_.regions.find(region);
    if (rit == p_.regions.end()) return Fail(env, "no such region", "ERR_INVALID_ARG");
    Conn* c = p_.Find(conn);
    if (!c || c->state != ConnState::Up) return Fail(env, "no such connection", "ERR_INVALID_ARG");
    if ((perms & ~3u) || perms == 0) return Fail(env, "perms must be 1 (read), 2 (write) or 3", "ERR_INVALID_ARG");
    if (!(offset >= 0 && length > 0 && offset + length <= double(rit->second->size)))
      return Fail(env, "the window must lie inside the region", "ERR_INVALID_ARG");
    if (p_.keys.size() >= p_.maxKeys) return Fail(env, "too many keys", "ERR_RDMA_LIMIT");
    Key k;
    k.region = region;
    k.conn = conn;
    k.perms = uint8_t(perms);
    k.base = uint64_t(offset);
    k.len = uint64_t(length);
    if (info.Length() > 5 && info[5].IsObject()) {
      Napi::Object o = info[5].As<Napi::Object>();
      Napi::Value mk = o.Get("macKey");
      Napi::Value ss = o.Get("slotSize");
      if (!mk.IsBuffer() || mk.As<Napi::Buffer<uint8_t>>().Length() != 32 || !ss.IsNumber())
        return Fail(env, "slotted keys need macKey (32 bytes) and slotSize", "ERR_INVALID_ARG");
      uint32_t slotSize = ss.As<Napi::Number>().Uint32Value();
      if (slotSize < kSlotHdr + 1 || slotSize > kMaxPayload || k.len % slotSize != 0)
        return Fail(env, "slotSize must divide the window and fit one request", "ERR_INVALID_ARG");
      k.slotted = true;
      k.slotSize = slotSize;
      k.mac.Init(mk.As<Napi::Buffer<uint8_t>>().Data());
    }
    uint64_t rkey = p_.FreshKey();
    p_.keys[rkey] = k;
    p_.Count("keys.granted");
    return Napi::BigInt::New(env, rkey);
  }

  Napi::Value RevokeKey(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    uint64_t k;
    if (!ReadKey(info[0], k)) return Fail(env, "revoke(rkey): rkey must be a bigint", "ERR_INVALID_ARG");
    return Napi::Boolean::New(env, p_.Revoke(k));
  }

  // rotate(rkey) -> a fresh key with the same grant (and slot sequence); the old one is revoked.
  Napi::Value Rotate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    uint64_t k;
    if (!ReadKey(info[0], k)) return Fail(env, "rotate(rkey): rkey must be a bigint", "ERR_INVALID_ARG");
    auto it = p_.keys.find(k);
    if (it == p_.keys.end()) return Fail(env, "no such key", "ERR_INVALID_ARG");
    Key copy = it->second;
    p_.Revoke(k);
    uint64_t fresh = p_.FreshKey();
    p_.keys[fresh] = copy;
    p_.Count("keys.rotated");
    return Napi::BigInt::New(env, fresh);
  }

  // exclusiveWriter(region, conn | -1[, slots]) -> rkey | null. Revokes every key with write permission on
  // the region, then grants read-write over the whole region to `conn` alone. Requests are served on this
  // event loop, so once this returns no write under a revoked key can land (the fence).
  Napi::Value ExclusiveWriter(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    if (!info[0].IsNumber() || !info[1].IsNumber())
      return Fail(env, "exclusiveWriter(region, conn | -1)", "ERR_INVALID_ARG");
    uint32_t region = info[0].As<Napi::Number>().Uint32Value();
    int64_t conn = info[1].As<Napi::Number>().Int64Value();
    auto rit = p_.regions.find(region);
    if (rit == p_.regions.end()) return Fail(env, "no such region", "ERR_INVALID_ARG");
    p_.RevokeWhere([](const Key& k, uint32_t r) { return k.region == r && (k.perms & PERM_WRITE); }, region);
    p_.Count("fences");
    if (conn < 0) return env.Null();
    Conn* c = p_.Find(uint32_t(conn));
    if (!c || c->state != ConnState::Up) return Fail(env, "no such connection", "ERR_INVALID_ARG");
    Key k;
    k.region = region;
    k.conn = uint32_t(conn);
    k.perms = PERM_READ | PERM_WRITE;
    k.base = 0;
    k.len = rit->second->size;
    uint64_t rkey = p_.FreshKey();
    p_.keys[rkey] = k;
    p_.Count("keys.granted");
    return Napi::BigInt::New(env, rkey);
  }

  Conn* UpConn(const Napi::Value& v) {
    if (!v.IsNumber()) return nullptr;
    Conn* c = p_.Find(v.As<Napi::Number>().Uint32Value());
    return c && c->state == ConnState::Up ? c : nullptr;
  }

  static bool Bytes(const Napi::Value& v, const uint8_t*& data, size_t& len) {
    if (!v.IsTypedArray()) return false;
    Napi::TypedArray ta = v.As<Napi::TypedArray>();
    if (ta.TypedArrayType() != napi_uint8_array) return false;
    Napi::Uint8Array u = v.As<Napi::Uint8Array>();
    data = u.Data();
    len = u.ByteLength();
    return true;
  }

  Napi::Value Post(const Napi::CallbackInfo& info, uint8_t op) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    Conn* c = UpConn(info[0]);
    if (!c) return Napi::Boolean::New(env, false);
    if (!info[1].IsNumber()) return Fail(env, "post(conn, wrId, ...): wrId must be a number", "ERR_INVALID_ARG");
    uint64_t wrId = uint64_t(info[1].As<Napi::Number>().DoubleValue());
    uint64_t rkey = 0, off = 0;
    const uint8_t* data = nullptr;
    size_t len = 0;
    uint32_t imm = 0;
    if (op == OP_SEND) {
      if (!Bytes(info[2], data, len)) return Fail(env, "postSend(conn, wrId, bytes)", "ERR_INVALID_ARG");
    } else {
      if (!ReadKey(info[2], rkey) || !info[3].IsNumber())
        return Fail(env, "post(conn, wrId, rkey, offset, ...)", "ERR_INVALID_ARG");
      off = uint64_t(info[3].As<Napi::Number>().DoubleValue());
      if (op == OP_READ) {
        if (!info[4].IsNumber()) return Fail(env, "postRead(conn, wrId, rkey, offset, length)", "ERR_INVALID_ARG");
        len = info[4].As<Napi::Number>().Uint32Value();
      } else {
        if (!Bytes(info[4], data, len)) return Fail(env, "postWrite(conn, wrId, rkey, offset, bytes[, imm])", "ERR_INVALID_ARG");
        if (info.Length() > 5 && info[5].IsNumber()) {
          op = OP_WRITE_IMM;
          imm = info[5].As<Napi::Number>().Uint32Value();
        }
      }
    }
    if (len > kMaxPayload) return Fail(env, "more than one slot: " + std::to_string(len) + " bytes", "ERR_RDMA_TOO_LONG");
    uint8_t* slot = p_.NextSlot(c);
    if (!slot) return Napi::Boolean::New(env, false);
    uint8_t hdr[kHdrBytes] = {0};
    hdr[0] = op;
    Wr32(hdr + 4, uint32_t(len));
    Wr64(hdr + 8, wrId);
    Wr64(hdr + 16, rkey);
    Wr64(hdr + 24, off);
    Wr32(hdr + 32, imm);
    memcpy(slot, hdr, kHdrBytes);
    if (data && op != OP_READ) memcpy(slot + kHdrBytes, data, len);
    p_.Publish(c);
    return Napi::Boolean::New(env, true);
  }

  Napi::Value PostWrite(const Napi::CallbackInfo& info) { return Post(info, OP_WRITE); }
  Napi::Value PostRead(const Napi::CallbackInfo& info) { return Post(info, OP_READ); }
  Napi::Value PostSend(const Napi::CallbackInfo& info) { return Post(info, OP_SEND); }

  // postSlot(conn, wrId, rkey, offset, macKey, seq, body, imm) -> posted: a WRITE with immediate of one
  // slot for a slotted key, built in the mailbox: the slot header (seq u64, body length u32, flags u32 = 0,
  // the first 16 bytes of the slot MAC under macKey) and then the body.
  Napi::Value PostSlot(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    Conn* c = UpConn(info[0]);
    if (!c) return Napi::Boolean::New(env, false);
    uint64_t rkey = 0;
    const uint8_t* mk = nullptr;
    const uint8_t* body = nullptr;
    size_t mkLen = 0, bodyLen = 0;
    if (info.Length() < 8 || !info[1].IsNumber() || !ReadKey(info[2], rkey) || !info[3].IsNumber() ||
        !Bytes(info[4], mk, mkLen) || mkLen != 32 || !info[5].IsNumber() || !Bytes(info[6], body, bodyLen) ||
        !info[7].IsNumber())
      return Fail(env, "postSlot(conn, wrId, rkey, offset, macKey(32), seq, body, imm)", "ERR_INVALID_ARG");
    if (bodyLen > kMaxPayload - kSlotHdr)
      return Fail(env, "more than one slot: " + std::to_string(bodyLen) + " bytes", "ERR_RDMA_TOO_LONG");
    uint64_t wrId = uint64_t(info[1].As<Napi::Number>().DoubleValue());
    uint64_t off = uint64_t(info[3].As<Napi::Number>().DoubleValue());
    uint64_t seq = uint64_t(info[5].As<Napi::Number>().DoubleValue());
    uint32_t imm = info[7].As<Napi::Number>().Uint32Value();
    uint8_t* slot = p_.NextSlot(c);
    if (!slot) return Napi::Boolean::New(env, false);
    if (!c->sendMacSet || memcmp(c->sendMac.key, mk, 32) != 0) {
      c->sendMac.Init(mk);
      c->sendMacSet = true;
    }
    uint32_t len = uint32_t(kSlotHdr + bodyLen);
    memset(slot, 0, kHdrBytes + kSlotHdr);
    slot[0] = OP_WRITE_IMM;
    Wr32(slot + 4, len);
    Wr64(slot + 8, wrId);
    Wr64(slot + 16, rkey);
    Wr64(slot + 24, off);
    Wr32(slot + 32, imm);
    // MACed from our own memory, not from the shared slot the peer can also write.
    uint8_t hdr[kSlotHdr] = {0};
    Wr64(hdr, seq);
    Wr32(hdr + 8, uint32_t(bodyLen));
    uint8_t md[32];
    c->sendMac.Mac(off, hdr, body, bodyLen, md);
    memcpy(hdr + 16, md, kMacBytes);
    memcpy(slot + kHdrBytes, hdr, kSlotHdr);
    memcpy(slot + kHdrBytes + kSlotHdr, body, bodyLen);
    p_.Publish(c);
    return Napi::Boolean::New(env, true);
  }

  // postRaw(conn, slotBytes): a Byzantine requester's arbitrary slot (header and payload), for tests.
  Napi::Value PostRaw(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    Conn* c = UpConn(info[0]);
    const uint8_t* data = nullptr;
    size_t len = 0;
    if (!c || !Bytes(info[1], data, len) || len > kSlotBytes) return Napi::Boolean::New(env, false);
    uint8_t* slot = p_.NextSlot(c);
    if (!slot) return Napi::Boolean::New(env, false);
    memcpy(slot, data, len);
    p_.Publish(c);
    return Napi::Boolean::New(env, true);
  }

  // mailboxWrite(conn, offset, bytes): scribbles on the shared mailbox, as a Byzantine peer can.
  Napi::Value MailboxWrite(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    Conn* c = UpConn(info[0]);
    const uint8_t* data = nullptr;
    size_t len = 0;
    if (!c || !info[1].IsNumber() || !Bytes(info[2], data, len)) return Napi::Boolean::New(env, false);
    double off = info[1].As<Napi::Number>().DoubleValue();
    if (!(off >= 0 && off + double(len) <= double(kMailboxBytes))) return Napi::Boolean::New(env, false);
    memcpy(c->mbox + size_t(off), data, len);
    Provider::SockDoorbell(c);
    return Napi::Boolean::New(env, true);
  }

  Napi::Value MailboxFd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Conn* c = UpConn(info[0]);
    return Napi::Number::New(env, c ? c->memfd : -1);
  }

  // setIdentity(conn, identity) -> false when the identity is banned (the connection is then closed).
  Napi::Value SetIdentity(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    Conn* c = UpConn(info[0]);
    if (!c || !info[1].IsString()) return Napi::Boolean::New(env, false);
    std::string id = info[1].As<Napi::String>();
    if (p_.banned.count(id)) {
      p_.Count("refused.banned-identity");
      p_.CloseConn(c->id, "identity-banned");
      return Napi::Boolean::New(env, false);
    }
    c->identity = id;
    if (p_.strikes.size() > 4096 && !p_.strikes.count(id)) p_.strikes.clear();  // bounded
    return Napi::Boolean::New(env, true);
  }

  Napi::Value IsBanned(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) return Napi::Boolean::New(env, false);
    return Napi::Boolean::New(env, p_.banned.count(info[0].As<Napi::String>().Utf8Value()) > 0);
  }

  Napi::Value CloseConnection(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Alive(env)) return env.Undefined();
    if (info[0].IsNumber()) p_.CloseConn(info[0].As<Napi::Number>().Uint32Value(), "closed-locally");
    return env.Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    for (auto& [k, v] : p_.counters) o.Set(k, v);
    o.Set("connections", double(p_.conns.size()));
    o.Set("keys", double(p_.keys.size()));
    o.Set("revokedRemembered", double(p_.revoked.size()));
    o.Set("regions", double(p_.regions.size()));
    o.Set("bannedIdentities", double(p_.banned.size()));
    return o;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }
};

Napi::Value Layout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("slotBytes", kSlotBytes);
  o.Set("slots", kSlots);
  o.Set("headerBytes", kHdrBytes);
  o.Set("maxPayload", kMaxPayload);
  o.Set("ctlBytes", kCtlBytes);
  o.Set("ringBytes", double(kRingBytes));
  o.Set("mailboxHeader", double(kMailboxHeader));
  o.Set("mailboxBytes", double(kMailboxBytes));
  o.Set("slotHeaderBytes", kSlotHdr);
  o.Set("macBytes", kMacBytes);
  return o;
}

}  // namespace

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  exports.Set("ShmProvider", ShmProvider::Init(env));
  exports.Set("probeVerbs", Napi::Function::New(env, ProbeVerbs));
  exports.Set("layout", Napi::Function::New(env, Layout));
  return exports;
}

}  // namespace orderer_rdma

Napi::Object InitOrdererRdma(Napi::Env env, Napi::Object exports) { return orderer_rdma::InitAddon(env, exports); }

NODE_API_MODULE(NODE_GYP_MODULE_NAME, InitOrdererRdma)
