/* Wine 8 (Debian 12) lacks bcryptprimitives.dll, from which Rust's standard library on
 * Windows takes its random bytes (ProcessPrng). This stand-in, used only to run the
 * Windows build's tests under Wine, answers from RtlGenRandom instead. */
#include <windows.h>
#include <ntsecapi.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
