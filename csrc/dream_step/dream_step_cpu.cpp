// dream_step CPU kernel: to be written
