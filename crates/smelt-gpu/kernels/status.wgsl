
// Reporting a failed data check (appended to kernels that check their data; the
// kernel declares `status` as `array<atomic<u32>, 2>` at the binding where the
// Rust side passes `Bind::Status`). Word 0 keeps the *smallest* failure code
// (`Recorder::error_code` numbers them in node order, so the first failing node
// is the one reported, as on the CPU), stored as !code so that the cleared word
// (0) loses to every failure under atomicMax. Word 1 holds the value that failed,
// written only by the thread that lowered the code: one kernel's threads share
// one code and dispatches of a pass run one after another, so the value always
// belongs to the code beside it.
fn report_failure(code: u32, value: i32) {
    let previous = atomicMax(&status[0], ~code);
    if (previous < ~code) {
        atomicStore(&status[1], bitcast<u32>(value));
    }
}
