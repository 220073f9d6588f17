//! Android's fork server in miniature (the world the ANON_VMA_LAZY series measured): a
//! parent preloads N written anonymous VMAs, then forks `--apps` apps that never exec; each
//! writes the first half of what it inherited (COW) and maps and writes its own VMAs.
use crate::fail::Res;
use crate::out::{hold, marker, Phase};
use crate::procs::{self, child};
use crate::single::setup;
use crate::vma::{self, addr, PAGES};
use crate::{Ctx, Done};

/// Each app's own VMAs: half the preload, at least one, above the inherited ones.
fn own(n: usize) -> usize {
    n.div_ceil(2).max(1)
}

fn app(c: &Ctx) -> Res<()> {
    let n = c.n;
    marker(Phase::Touch);
    for i in 0..n.div_ceil(2) {
        vma::write_pages(addr(i), PAGES);
    }
    marker(Phase::Map);
    let m = own(n);
    for i in n..n + m {
        vma::map(addr(i), PAGES * vma::page(), libc::PROT_READ | libc::PROT_WRITE)?;
    }
    marker(Phase::Touch);
    for i in n..n + m {
        vma::write_pages(addr(i), PAGES);
    }
    hold(c.hold, "app");
    Ok(())
}

pub fn zygote(c: &Ctx, apps: usize) -> Res<Done> {
    let pages = setup(c, true)?;
    let mut pids = Vec::with_capacity(apps);
    for _ in 0..apps {
        marker(Phase::Fork);
        match procs::fork()? {
            None => child(|| app(c)),
            Some(pid) => pids.push(pid),
        }
    }
    hold(c.hold, c.role);
    for pid in pids {
        procs::wait(pid)?;
    }
    let per_app = c.n.div_ceil(2) + own(c.n);
    Ok(Done::pages(pages + apps * per_app * PAGES))
}
