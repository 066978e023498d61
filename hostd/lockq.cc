#include "lockq.h"

#include <algorithm>
#include <cassert>
#include <string>

namespace dshm {

namespace {

std::string Describe(uint32_t lock, Holder who) {
    return "lock " + std::to_string(lock) + " for client " + std::to_string(who.client) +
           " of host " + std::to_string(who.host);
}

}  // namespace

LockTable::LockTable(uint32_t nlocks) : locks_(nlocks) {
    assert(nlocks >= 1 && nlocks <= DSHM_MAX_LOCKS);
}

Status LockTable::Acquire(uint32_t lock, Holder who, bool *granted_now) {
    *granted_now = false;
    if (lock >= locks_.size()) {
        return Status::BadLock("lock " + std::to_string(lock) +
                               " >= " + std::to_string(locks_.size()));
    }
    Lock &l = locks_[lock];
    if (l.holder == who) {
        return Status::AlreadyHeld(Describe(lock, who) + ": already held");
    }
    if (l.queued.contains(who.Key())) {
        return Status::Pending(Describe(lock, who) + ": already queued");
    }
    if (!l.holder) {
        l.holder = who;
        *granted_now = true;
        return Status::OK();
    }
    if (l.waiters.size() >= kMaxWaitersPerLock || total_waiters_ >= kMaxWaiters) {
        return Status::Busy(Describe(lock, who) + ": " + std::to_string(l.waiters.size()) +
                            " waiters for the lock, " + std::to_string(total_waiters_) +
                            " for the segment's locks");
    }
    l.waiters.push_back(who);
    l.queued.insert(who.Key());
    total_waiters_++;
    return Status::OK();
}

std::optional<Holder> LockTable::GrantNext(Lock &l) {
    if (l.waiters.empty())
        return std::nullopt;
    l.holder = l.waiters.front();
    l.waiters.pop_front();
    l.queued.erase(l.holder->Key());
    total_waiters_--;
    return l.holder;
}

Status LockTable::Release(uint32_t lock, Holder who, std::optional<Holder> *next_holder) {
    next_holder->reset();
    if (lock >= locks_.size()) {
        return Status::BadLock("lock " + std::to_string(lock) +
                               " >= " + std::to_string(locks_.size()));
    }
    Lock &l = locks_[lock];
    if (l.holder != who) {
        return Status::NotHeld(Describe(lock, who) + ": not held by it");
    }
    l.holder.reset();
    *next_holder = GrantNext(l);
    return Status::OK();
}

template <typename Match>
std::vector<std::pair<uint32_t, Holder>> LockTable::Drop(Match match) {
    std::vector<std::pair<uint32_t, Holder>> grants;
    for (uint32_t i = 0; i < locks_.size(); i++) {
        Lock &l = locks_[i];
        const size_t removed = std::erase_if(l.waiters, [&](const Holder &h) {
            if (!match(h))
                return false;
            l.queued.erase(h.Key());
            return true;
        });
        total_waiters_ -= removed;
        if (l.holder && match(*l.holder)) {
            l.holder.reset();
            if (std::optional<Holder> next = GrantNext(l))
                grants.emplace_back(i, *next);
        }
    }
    return grants;
}

std::vector<std::pair<uint32_t, Holder>> LockTable::DropClient(Holder who) {
    return Drop([who](const Holder &h) { return h == who; });
}

std::vector<std::pair<uint32_t, Holder>> LockTable::DropHost(uint32_t host) {
    return Drop([host](const Holder &h) { return h.host == host; });
}

void LockTable::Rename(Holder from, Holder to, std::vector<uint32_t> *held,
                       std::vector<uint32_t> *queued) {
    for (uint32_t i = 0; i < locks_.size(); i++) {
        Lock &l = locks_[i];
        if (l.holder == from) {
            l.holder = to;
            held->push_back(i);
        }
        if (!l.queued.erase(from.Key()))
            continue;
        l.queued.insert(to.Key());
        for (Holder &w : l.waiters) {
            if (w == from) {
                w = to;
                queued->push_back(i);
            }
        }
    }
}

std::vector<LockTable::Entry> LockTable::Export() const {
    std::vector<Entry> out;
    for (uint32_t i = 0; i < locks_.size(); i++) {
        if (!locks_[i].holder)
            continue;
        out.push_back(Entry{i, *locks_[i].holder, 0});
        uint32_t pos = 1;
        for (const Holder &w : locks_[i].waiters)
            out.push_back(Entry{i, w, pos++});
    }
    return out;
}

Status LockTable::Import(const std::vector<Entry> &entries) {
    for (const Entry &e : entries) {
        Status st;
        if (e.lock >= locks_.size()) {
            st = Status::Proto("lock " + std::to_string(e.lock) + " out of range");
        } else {
            Lock &l = locks_[e.lock];
            bool dup = l.holder == e.who || l.queued.contains(e.who.Key());
            if (dup) {
                st = Status::Proto(Describe(e.lock, e.who) + ": listed twice");
            } else if (e.pos == 0 && !l.holder) {
                l.holder = e.who;
            } else if (e.pos != 0 &&
                       (l.waiters.size() >= kMaxWaitersPerLock || total_waiters_ >= kMaxWaiters)) {
                st = Status::Proto(Describe(e.lock, e.who) + ": more waiters than allowed");
            } else if (e.pos != 0 && l.holder && e.pos == l.waiters.size() + 1) {
                l.waiters.push_back(e.who);
                l.queued.insert(e.who.Key());
                total_waiters_++;
            } else {
                st = Status::Proto(Describe(e.lock, e.who) + ": position " + std::to_string(e.pos) +
                                   " out of order");
            }
        }
        if (!st.ok()) {
            locks_.assign(locks_.size(), Lock{});
            total_waiters_ = 0;
            return st;
        }
    }
    return Status::OK();
}

std::optional<Holder> LockTable::HolderOf(uint32_t lock) const {
    if (lock >= locks_.size()) {
        return std::nullopt;
    }
    return locks_[lock].holder;
}

size_t LockTable::Waiters(uint32_t lock) const {
    return lock < locks_.size() ? locks_[lock].waiters.size() : 0;
}

std::vector<std::tuple<uint32_t, Holder, size_t>> LockTable::Snapshot() const {
    std::vector<std::tuple<uint32_t, Holder, size_t>> held;
    for (uint32_t i = 0; i < locks_.size(); i++) {
        if (locks_[i].holder) {
            held.emplace_back(i, *locks_[i].holder, locks_[i].waiters.size());
        }
    }
    return held;
}

}  // namespace dshm
