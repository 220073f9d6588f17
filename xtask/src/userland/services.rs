//! The services the userland starts: (Debian package, systemd unit), in start order for
//! `--apps N` (the first N). Ports that collide move (rootfs.sh): apache2 to 8080,
//! lighttpd to 8081; nginx keeps 80.
pub const SERVICES: [(&str, &str); 24] = [
    ("openssh-server", "ssh"),
    ("cron", "cron"),
    ("rsyslog", "rsyslog"),
    ("nginx", "nginx"),
    ("apache2", "apache2"),
    ("lighttpd", "lighttpd"),
    ("redis-server", "redis-server"),
    ("postgresql", "postgresql@15-main"),
    ("mariadb-server", "mariadb"),
    ("memcached", "memcached"),
    ("exim4-daemon-light", "exim4"),
    ("chrony", "chrony"),
    ("bind9", "named"),
    ("squid", "squid"),
    ("haproxy", "haproxy"),
    ("avahi-daemon", "avahi-daemon"),
    ("samba", "smbd"),
    ("samba", "nmbd"),
    ("vsftpd", "vsftpd"),
    ("at", "atd"),
    ("php8.2-fpm", "php8.2-fpm"),
    ("dovecot-imapd", "dovecot"),
    ("snmpd", "snmpd"),
    ("mosquitto", "mosquitto"),
];

/// The packages to install (each once).
pub fn packages() -> String {
    let mut p: Vec<&str> = SERVICES.iter().map(|s| s.0).collect();
    p.dedup();
    p.join(" ")
}

/// The units to disable in the image: every one Debian enables, including the
/// `postgresql` wrapper that pulls the cluster in.
pub fn disable_units() -> String {
    let mut u: Vec<&str> = SERVICES.iter().map(|s| if s.1.starts_with("postgresql@") { "postgresql" } else { s.1 }).collect();
    u.dedup();
    u.join(" ")
}
