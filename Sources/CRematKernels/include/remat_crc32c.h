#ifndef REMAT_CRC32C_H
#define REMAT_CRC32C_H
#include <stddef.h>
#include <stdint.h>

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of `n` bytes, continuing from `crc`
/// (start with 0). The SSE4.2 `crc32` instruction where the CPU has it (checked at run time),
/// a table otherwise; both give the same value (the check value of "123456789" is 0xE3069283).
uint32_t remat_crc32c(uint32_t crc, const void *data, size_t n);

#endif
