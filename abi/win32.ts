// Win32 constants the ABI hands to guests, one definition for the generated
// header (abi/pvx.h) and the host handlers.

export const win32Errors = {
  ERROR_SUCCESS: 0,
  ERROR_INVALID_FUNCTION: 1,
  ERROR_FILE_NOT_FOUND: 2,
  ERROR_PATH_NOT_FOUND: 3,
  ERROR_ACCESS_DENIED: 5,
  ERROR_INVALID_HANDLE: 6,
  ERROR_NOT_ENOUGH_MEMORY: 8,
  ERROR_INVALID_PARAMETER: 87,
  ERROR_INSUFFICIENT_BUFFER: 122,
  ERROR_CALL_NOT_IMPLEMENTED: 120,
  ERROR_NOACCESS: 998,
} as const;

export const STD_INPUT_HANDLE = 0xfffffff6; // (DWORD)-10
export const STD_OUTPUT_HANDLE = 0xfffffff5; // (DWORD)-11
export const STD_ERROR_HANDLE = 0xfffffff4; // (DWORD)-12
export const INVALID_HANDLE_VALUE = 0xffffffffffffffffn;
