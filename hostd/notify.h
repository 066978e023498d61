// notify: dshmd's state for the service manager (systemd's Type=notify,
// sd_notify(3); data/dshmd.service.in).
//
//   NotifyReady      READY=1 (once dshmd listens on both sockets; again
//                    after a reload), with a STATUS= line
//   NotifyReloading  RELOADING=1 and MONOTONIC_USEC= (SIGHUP, before the
//                    configuration is read again)
//   NotifyStatus     a STATUS= line only (what `systemctl status` shows)
//   NotifyStopping   STOPPING=1 (the loop is left)
//
// Each is a no-op when NOTIFY_SOCKET is unset (dshmd not started by systemd,
// the unit tests) and never fails dshmd: a lost notification is logged at
// debug level.  NOTIFY_SOCKET is kept in the environment (later
// notifications need it).
//
// Thread safety: callable from any thread (sd_notify keeps no state).
#pragma once

#include <string>

namespace dshm {

void NotifyReady(const std::string &status);
void NotifyReloading(const std::string &status);
void NotifyStatus(const std::string &status);
void NotifyStopping(const std::string &status);

}  // namespace dshm
